"""DI tags: which image a tag names, and moving a tag from one DI of an OSF to another."""
from __future__ import annotations

from datetime import date

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from .models import Di, DiTag

# Tags the system manages: `head` always names the newest DI of the OSF.
HEAD, DEFAULT = "head", "default"


class TagError(Exception):
    """A tag cannot be set or removed; the message says why."""


def tag_di(session: Session, di: Di, tag: str, fixed: bool = False) -> None:
    """Give `tag` to `di`, taking it from the OSF's DI that had it unless that one is fixed."""
    current = session.scalar(select(DiTag).where(DiTag.osf_id == di.osf_id, DiTag.tag == tag))
    if current is not None:
        if current.di_id == di.id:
            current.fixed = current.fixed or fixed
            return
        if current.fixed:
            raise TagError(f"tag '{tag}' is fixed on DI {current.di_id}; untag it there first")
        session.delete(current)
        session.flush()
    session.add(DiTag(di_id=di.id, osf_id=di.osf_id, tag=tag, fixed=fixed))
    session.flush()


def untag_di(session: Session, di: Di, tag: str) -> None:
    if tag == HEAD:
        raise TagError("'head' always names the newest DI and cannot be removed")
    removed = session.execute(delete(DiTag).where(DiTag.di_id == di.id, DiTag.tag == tag))
    if removed.rowcount == 0:
        raise TagError(f"DI {di.id} has no tag '{tag}'")


def next_version(session: Session, osf_id: int) -> str:
    """QVD's automatic versions: YYYY-MM-DD-N, N counting the OSF's DIs of the day."""
    today = date.today().isoformat()
    count = session.scalar(select(func.count(Di.id)).where(Di.osf_id == osf_id,
                                                           Di.version.like(f"{today}-%")))
    return f"{today}-{count + 1}"


def osf_has_tag(session: Session, osf_id: int, tag: str) -> bool:
    return session.scalar(select(func.count()).select_from(DiTag)
                          .where(DiTag.osf_id == osf_id, DiTag.tag == tag)) > 0
