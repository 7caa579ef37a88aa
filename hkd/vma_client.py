"""Calling the agent inside a VM: `GET /vma/<method>?k=v` over plain HTTP with the node's
secret for this run of the VM, JSON back.

A failed ping counts (qvd_vma_ping_failures_total) once the agent has answered in this run
of the VM (`answered`, on its address, which is new at every start): the pings of a VM
still booting fail until its agent listens, and are no failure."""
from __future__ import annotations

import asyncio
import json
from urllib.parse import urlencode

from qvd.vma import secret

from . import metrics
from .backends.base import VmAddress


class VmaError(Exception):
    """The VMA did not answer, or answered an error."""


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
    address, port = target.address, target.vma_port
    query = f"?{urlencode(params)}" if params else ""
    auth = "".join(f"{k}: {v}\r\n" for k, v in secret.bearer(target.secret).items())
    request = (f"GET /vma/{method}{query} HTTP/1.1\r\nHost: {address}\r\n{auth}"
               "Connection: close\r\n\r\n").encode()
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(address, port)
            try:
                writer.write(request)
                await writer.drain()
                raw = await reader.read()
            finally:
                writer.close()
    except (OSError, TimeoutError) as exc:
        raise VmaError(f"VMA at {address}:{port} unreachable: {exc or 'timeout'}") from None
    head, _, body = raw.partition(b"\r\n\r\n")
    status = head.split(b" ", 2)[1:2]
    try:
        answer = json.loads(body)
    except ValueError:
        answer = None
    if status != [b"200"]:  # the agent's error says why (400: bad parameters)
        why = answer.get("error") if isinstance(answer, dict) else None
        raise VmaError(f"VMA {method}: " + (why or (head.splitlines()[0].decode(
            errors="replace") if head else "no answer")))
    if answer is None:
        raise VmaError(f"VMA {method}: answer is not JSON")
    return answer
