"""Desktop session ends that an L7R child of this node journaled but could not write (the
database was away when its stream ended, or it was killed meanwhile): written here, by the
node, once their writer is gone (qvd.l7r.session_end)."""
from __future__ import annotations

import logging
import os

from qvd.l7r.session_end import STATEMENTS, orphaned

from .database import DbUnavailable

log = logging.getLogger(__name__)


async def reconcile(db, directory: str) -> int:
    """Write the orphaned entries; returns how many landed (the rest wait for the next poll)."""
    done = 0
    for path, end in orphaned(directory):
        try:
            for statement in STATEMENTS:
                await db.fetch(statement, end.params)
        except DbUnavailable as exc:
            log.warning("journaled session ends postponed: %s", exc)
            break
        os.unlink(path)
        done += 1
        log.info("session %d (vm %d): its journaled end written (%s, %d bytes up, %d down)",
                 end.session, end.vm, end.reason, end.up, end.down)
    return done
