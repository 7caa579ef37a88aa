"""Watching a user's desktop for support (`vm spy`): the page (noVNC, view only unless the
administrator asked for interactive and may) and its WebSocket to the desktop.

The tunnel runs the domain operation (ACLs, the VM's tenant, the audit entry), then goes
to the VM's desktop port as the L7R does (the agent's relay, the secret of this run) and
joins the session as one more viewer: Xvnc serves both, the user's connection is untouched.
What the watcher's viewer sends passes through wat/rfb_input.py: in view only, no key,
pointer or clipboard reaches the desktop whatever the page's script does.
Refusals before the WebSocket opens (no login, another site's page) are HTTP 403; after it,
a JSON {error, status} and close code 4000 + status, as the portal's tunnel.
"""
from __future__ import annotations

import asyncio
import json
import logging

from fastapi import APIRouter, Request, WebSocket, WebSocketDisconnect
from starlette.concurrency import run_in_threadpool

from qvd.vma import secret

from .rfb_input import ViewerError, ViewerFilter
from .web import LoginNeeded, PageError, acting, allowed, page, run, same_origin

router = APIRouter()
log = logging.getLogger("qvd.wat.spy")
CONNECT_TIMEOUT = 10.0
CHUNK = 256 * 1024


def _keys(interactive: bool) -> list[str]:
    return ["interactive"] if interactive else []


@router.get("/wat/vms/{vm_id}/spy")
def spy_page(request: Request, vm_id: int, interactive: int = 0):
    ctx = acting(request)
    if not allowed(ctx, "vm spy", _keys(bool(interactive))):
        raise PageError(403, "your role does not let you watch this desktop"
                             + (" interactively (vm.spy.interactive)" if interactive else
                                " (vm.spy)"))
    return page(request, ctx, "spy.html", vm_id=vm_id, interactive=bool(interactive))


def _same_origin(websocket: WebSocket) -> bool:
    """A browser always names the page's origin on a WebSocket: it must be there, and ours."""
    return websocket.headers.get("origin") is not None and same_origin(websocket)


async def _refuse(websocket: WebSocket, status: int, message: str) -> None:
    await websocket.send_text(json.dumps({"error": message, "status": status}))
    await websocket.close(code=4000 + status, reason=message[:120])


@router.websocket("/wat/vms/{vm_id}/spy/tunnel")
async def spy_tunnel(websocket: WebSocket, vm_id: int, interactive: int = 0):
    if not _same_origin(websocket):
        return await websocket.close(code=1008)  # before accept: HTTP 403
    try:
        ctx = await run_in_threadpool(acting, websocket)
    except LoginNeeded:
        return await websocket.close(code=1008)
    await websocket.accept()
    try:
        await run_in_threadpool(run, ctx, "vm spy", filters={"id": str(vm_id)},
                                args={"interactive": "1"} if interactive else {})
    except PageError as exc:
        return await _refuse(websocket, exc.status, exc.message)
    target = ctx.spy_target
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(target.address, target.port), CONNECT_TIMEOUT)
        writer.write(secret.relay_greeting(target.secret))
        banner = await asyncio.wait_for(reader.readexactly(12), CONNECT_TIMEOUT)
    except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError):
        return await _refuse(websocket, 409, "the desktop has no session to watch: nobody "
                                             "has opened it since it started")
    if not banner.startswith(b"RFB "):
        writer.close()
        return await _refuse(websocket, 409, "this desktop is an NX session: only VNC "
                                             "desktops can be watched")
    await websocket.send_text(json.dumps({"ready": True}))
    await websocket.send_bytes(banner)
    await _carry(websocket, reader, writer, ViewerFilter(target.interactive))


async def _carry(websocket: WebSocket, reader, writer, viewer: ViewerFilter) -> None:
    async def to_watcher():
        while data := await reader.read(CHUNK):
            await websocket.send_bytes(data)

    async def to_desktop():
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            passed = viewer.feed(message.get("bytes") or b"")
            if passed:
                writer.write(passed)
                await writer.drain()

    tasks = [asyncio.ensure_future(to_watcher()), asyncio.ensure_future(to_desktop())]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            task.result()  # a ViewerError shows here
        code = 1000
    except ViewerError as exc:
        log.warning("watching a desktop: %s", exc)
        code = 1008
    except (OSError, WebSocketDisconnect, RuntimeError):
        code = 1000  # either side went away
    finally:
        for task in tasks:
            task.cancel()
        writer.close()
    try:
        await websocket.close(code=code)
    except RuntimeError:
        pass  # already closed
