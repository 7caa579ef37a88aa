"""qvd-hkd's /metrics endpoint on hkd.metrics.address, served from the node's asyncio loop.

No thread (prometheus_client's own server runs one): the node forks helpers, and a plain
HTTP/1.0 answer per connection is all a scraper needs. A scrape reads the in-memory registry
only; nothing here touches the database.
"""
from __future__ import annotations

import asyncio
import logging

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

log = logging.getLogger(__name__)
HEAD_LIMIT = 8192  # bytes of request head read; a scraper sends a few hundred


class MetricsAddressError(ValueError):
    """hkd.metrics.address is not HOST:PORT."""


def parse_address(value: str) -> tuple[str, int] | None:
    """'HOST:PORT' -> (host, port); '' -> None (metrics off)."""
    value = (value or "").strip()
    if not value:
        return None
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise MetricsAddressError(f"hkd.metrics.address = {value}: expected HOST:PORT, "
                                  f"e.g. 127.0.0.1:9640, or empty for no metrics")
    return host.strip("[]"), int(port)


async def _answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        async with asyncio.timeout(10):
            head = await reader.readuntil(b"\r\n\r\n")
        method, path, *_ = head[:HEAD_LIMIT].decode("latin-1").split(" ", 2) + ["", ""]
        if method != "GET":
            status, body, ctype = "405 Method Not Allowed", b"GET only\n", "text/plain"
        elif path.split("?")[0] in ("/metrics", "/"):
            status, body, ctype = "200 OK", generate_latest(REGISTRY), CONTENT_TYPE_LATEST
        else:
            status, body, ctype = "404 Not Found", b"try /metrics\n", "text/plain"
        writer.write(f"HTTP/1.0 {status}\r\nContent-Type: {ctype}\r\n"
                     f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body)
        await writer.drain()
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError,
            ConnectionError):
        pass  # a scraper that went away or sent garbage gets nothing
    finally:
        writer.close()


async def serve(host: str, port: int) -> asyncio.AbstractServer:
    """Listening on return; raises OSError (address in use, bad address) for the caller."""
    return await asyncio.start_server(_answer, host, port, limit=HEAD_LIMIT)
