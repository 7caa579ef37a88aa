"""Database changes pushed to open WAT pages: GET /wat/events, a Server-Sent Events stream.

One listener per qvd-api process: a thread holding one connection that LISTENs on
qvd_changes (db/notify.py: the payload names the object, its tenant and the changed fields),
reconnecting with back-off when the database goes away. Each change is handed to the event
loop and fanned out to the open streams, each a bounded queue: a subscriber that falls that
far behind is dropped (its stream ends; the browser's EventSource reconnects) rather than
let the queue grow.

Each stream sends, for a change the administrator may see (its tenant, or every tenant for
the supertenant; the listing's ACL held):
    event: vm-7-state        data: the new value as the page shows it, HTML-escaped
    event: vm-rows           data: 7   (a VM came or went: lists fetch their page again)
    event: vm-changed        data: 7   (the dashboard refetches its panel)
a `: keep-alive` comment every 15 s, at which the token is checked again (expired, revoked
or blocked: the stream ends), and after the listener reconnected, `K-rows` and `K-changed`
with empty data for every kind (changes may have been missed meanwhile).
"""
from __future__ import annotations

import asyncio
import html
import json
import logging
import re
import signal
import threading
import time
from contextlib import asynccontextmanager
from datetime import datetime

import psycopg
from fastapi import Request
from fastapi.responses import StreamingResponse
from sqlalchemy.exc import OperationalError
from starlette.concurrency import run_in_threadpool

from qvd.api.auth import actor_for
from qvd.api.problems import Problem
from qvd.api.session import token_of
from qvd.db.acl.check import AccessDenied, require
from qvd.db.engine import connection_params
from qvd.db.notify import CHANGES_CHANNEL

from .web import cell

log = logging.getLogger(__name__)

LISTINGS = {"vm": "vm list", "host": "host list", "session": "session list"}
SHARED_KINDS = {"host"}       # nodes belong to no tenant: the ACL alone decides
KEEP_ALIVE = 15.0             # seconds between comments (and token checks)
QUEUE_SIZE = 512              # changes a stream may lag behind before it is dropped
RETRY = (0.5, 10.0)           # the listener's reconnection delay: first, longest
_END = object()               # in a queue: the stream ends (dropped, or the server stops)
_LINES = re.compile(r"\r\n|\r|\n")


class Hub:
    """The open streams of this process; used from the event loop only, except
    `deliver`, which the listener thread calls."""

    def __init__(self):
        self.loop: asyncio.AbstractEventLoop | None = None
        self.queues: set[asyncio.Queue] = set()

    def subscribe(self) -> asyncio.Queue:
        queue = asyncio.Queue(QUEUE_SIZE)
        self.queues.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue) -> None:
        self.queues.discard(queue)

    def deliver(self, change: dict) -> None:
        if self.loop is not None:
            self.loop.call_soon_threadsafe(self.publish, change)

    def publish(self, change) -> None:
        for queue in list(self.queues):
            try:
                queue.put_nowait(change)
            except asyncio.QueueFull:
                log.warning("live: a stream fell %d changes behind; dropped", QUEUE_SIZE)
                self._end(queue)

    def end_all(self) -> None:
        for queue in list(self.queues):
            self._end(queue)

    def _end(self, queue: asyncio.Queue) -> None:
        self.queues.discard(queue)
        while not queue.empty():  # room for the end, whatever it had not read
            queue.get_nowait()
        queue.put_nowait(_END)


class Listener(threading.Thread):
    """LISTEN qvd_changes on one connection of its own; each payload to `deliver`."""

    def __init__(self, params: dict, deliver):
        super().__init__(name="qvd-api live listener", daemon=True)
        self.params = dict(params, application_name="qvd-api live", autocommit=True)
        self.deliver = deliver
        self.listening = threading.Event()  # set once the first LISTEN is in place
        self.stopping = threading.Event()

    def run(self) -> None:
        delay, missed = RETRY[0], False
        while not self.stopping.is_set():
            try:
                with psycopg.connect(**self.params) as conn:
                    conn.execute(f"LISTEN {CHANGES_CHANNEL}")
                    log.info("live: listening on %s", CHANGES_CHANNEL)
                    self.listening.set()
                    delay = RETRY[0]
                    if missed:  # changes committed while away were never sent
                        for kind in LISTINGS:
                            self.deliver({"k": kind, "id": None, "t": None, "f": {}})
                    missed = True
                    while not self.stopping.is_set():  # the timeout only looks at stopping
                        for note in conn.notifies(timeout=1.0):
                            self._received(note.payload)
            except psycopg.Error as exc:
                log.warning("live: database connection lost (%s); again in %.1f s",
                            str(exc).strip().splitlines()[0] if str(exc) else "closed", delay)
                missed = True
                self.stopping.wait(delay)
                delay = min(delay * 2, RETRY[1])

    def _received(self, payload: str) -> None:
        try:
            change = json.loads(payload)
            if change["k"] in LISTINGS and isinstance(change["f"], dict):
                self.deliver(change)
                return
        except (ValueError, KeyError, TypeError):
            pass
        log.warning("live: ignored a %s payload that is not a change: %.200s",
                    CHANGES_CHANNEL, payload)


def sse(event: str, data: str) -> str:
    """One event; a multi-line value takes one data: line per line (the SSE format)."""
    return f"event: {event}\n" + "".join(f"data: {line}\n" for line in _LINES.split(data)) \
        + "\n"


def shown(kind: str, field: str, value) -> str:
    if kind == "session" and field == "ended" and isinstance(value, str):
        value = datetime.fromisoformat(value)  # as the page shows a timestamp
    return html.escape(cell(value))


def visible_kinds(actor) -> set[str]:
    kinds = set()
    for kind, listing in LISTINGS.items():
        try:
            require(actor, listing)
        except AccessDenied:
            continue
        kinds.add(kind)
    return kinds


def events_for(change: dict, actor, kinds: set[str]) -> str:
    """What one administrator's stream gets of a change: nothing unless it may list it."""
    kind, ident = change["k"], change.get("id")
    if kind not in kinds:
        return ""
    if ident is None:  # the listener reconnected: refetch whatever is shown
        return sse(f"{kind}-rows", "") + sse(f"{kind}-changed", "")
    if (kind not in SHARED_KINDS and actor.visible_tenant is not None
            and change.get("t") != actor.tenant_id):
        return ""
    out = [sse(f"{kind}-{ident}-{field}", shown(kind, field, value))
           for field, value in change["f"].items()]
    if change.get("op"):  # a row came or went: lists fetch their page again
        out.append(sse(f"{kind}-rows", str(ident)))
    out.append(sse(f"{kind}-changed", str(ident)))
    return "".join(out)


async def _stream(engine, token: str, actor, queue: asyncio.Queue, hub: Hub):
    try:
        kinds = visible_kinds(actor)
        yield ": connected\n\n"
        check_at = time.monotonic() + KEEP_ALIVE
        while True:
            try:
                change = await asyncio.wait_for(queue.get(),
                                                max(0.0, check_at - time.monotonic()))
            except TimeoutError:
                check_at = time.monotonic() + KEEP_ALIVE
                try:  # roles are read afresh, as on every API request
                    actor = await run_in_threadpool(actor_for, engine, token)
                    kinds = visible_kinds(actor)
                except Problem as exc:
                    log.info("live: stream of %s ended: %s", actor.name, exc.detail)
                    return
                except OperationalError:
                    pass  # the database is away: nothing can be revoked meanwhile either
                yield ": keep-alive\n\n"
                continue
            if change is _END:
                return
            text = events_for(change, actor, kinds)
            if text:
                yield text
    finally:
        hub.unsubscribe(queue)


def _chain_exit_signals(hub: Hub) -> None:
    """On SIGTERM/SIGINT, end the streams first: uvicorn's graceful shutdown waits for every
    open response, and these would never end by themselves."""
    if threading.current_thread() is not threading.main_thread():
        return
    loop = hub.loop
    for sig in (signal.SIGTERM, signal.SIGINT):
        previous = signal.getsignal(sig)
        if not callable(previous):
            continue

        def handler(number, frame, previous=previous):
            loop.call_soon_threadsafe(hub.end_all)
            previous(number, frame)
        signal.signal(sig, handler)


def install(app) -> None:
    """Add GET /wat/events to the application, and the listener to its life."""
    hub = Hub()
    app.state.wat_live = hub
    outer = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(application):
        hub.loop = asyncio.get_running_loop()
        listener = Listener(connection_params(application.state.cfg), hub.deliver)
        listener.start()
        # Served once listening (when the database answers): no change is missed by a page.
        await asyncio.to_thread(listener.listening.wait, 10)
        _chain_exit_signals(hub)
        try:
            async with outer(application) as state:
                yield state
        finally:
            listener.stopping.set()
            hub.end_all()
            await asyncio.to_thread(listener.join, 5)

    app.router.lifespan_context = lifespan

    @app.get("/wat/events", include_in_schema=False)
    async def events(request: Request):
        engine, token = request.app.state.engine, token_of(request)
        actor = await run_in_threadpool(actor_for, engine, token)  # Problem 401 without
        queue = hub.subscribe()  # before the answer: what commits after it is sent
        return StreamingResponse(_stream(engine, token, actor, queue, hub),
                                 media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store",
                                          "X-Accel-Buffering": "no"})
