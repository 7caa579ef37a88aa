"""Commands for this node: LISTEN on its channels; a slow poll only covers lost notifications
(and a reconnection after the database restarted)."""
from __future__ import annotations

import asyncio
import logging

import psycopg

from qvd.db.notify import CONFIG_CHANNEL, host_cmd_channel, user_cmd_channel, vm_cmd_channel

log = logging.getLogger(__name__)


async def listen(node) -> None:
    poll = node.cfg.get_float("hkd.poll.interval")
    channels = (vm_cmd_channel(node.host_id), host_cmd_channel(node.host_id),
                user_cmd_channel(node.host_id), CONFIG_CHANNEL)
    while True:
        try:
            conn = await psycopg.AsyncConnection.connect(
                **dict(node.db.params, application_name=f"qvd-hkd {node.name} listener"),
                autocommit=True)
            async with conn:
                for channel in channels:
                    await conn.execute(f"LISTEN {channel}")
                await node.reload_config()  # what changed before this LISTEN
                while True:
                    await node.poll_commands()
                    async for note in conn.notifies(timeout=poll):
                        node.on_notification(note.channel, note.payload)
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            log.warning("listener: database connection lost (%s); reconnecting",
                        str(exc).strip().splitlines()[0] if str(exc) else "closed")
            await asyncio.sleep(1)
