"""Calling the agent inside a VM: `GET /vma/<method>?k=v` over plain HTTP with the node's
secret for this run of the VM, JSON back (the wire form: vma_wire.py).

A failed ping counts (qvd_vma_ping_failures_total) once the agent has answered in this run
of the VM (`answered`, on its address, which is new at every start): the pings of a VM
still booting fail until its agent listens, and are no failure."""
from __future__ import annotations

import asyncio

from . import metrics
from .backends.base import VmAddress
from .vma_wire import MAX_ANSWER, Call, VmaError


async def call(target: VmAddress, method: str, timeout: float = 3.0, **params) -> dict:
    try:
        answer = await _call(target, method, timeout, params)
    except VmaError:
        if method == "ping" and getattr(target, "answered", False):
            metrics.VMA_PING_FAILURES.inc()
        raise
    target.answered = True
    return answer


async def _call(target: VmAddress, method: str, timeout: float, params: dict) -> dict:
    call = Call(target.address, target.vma_port, target.secret, method, params)
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(target.address, target.vma_port)
            try:
                writer.write(call.request)
                await writer.drain()
                while (answer := call.feed(await reader.read(MAX_ANSWER))) is None:
                    pass
                return answer
            finally:
                writer.close()
    except (OSError, TimeoutError) as exc:
        raise call.unreachable(exc) from None
