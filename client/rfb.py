"""Just enough RFB (the VNC protocol, RFC 6143) to fetch the desktop as a picture.

Handshake with security type None (the TLS tunnel authenticated us), ask for 32-bit true
colour in Raw encoding, then gather framebuffer updates for a moment so that what the
session draws right after it starts is in the picture too.
"""
from __future__ import annotations

import socket
import struct
import time


class RfbError(Exception):
    pass


class Stream:
    """Exact reads over a socket, starting with bytes already received."""

    def __init__(self, sock: socket.socket, early: bytes = b""):
        self.sock, self.buffer = sock, bytearray(early)

    def read(self, size: int) -> bytes:
        while len(self.buffer) < size:
            data = self.sock.recv(max(65536, size - len(self.buffer)))
            if not data:
                raise RfbError("the desktop closed the connection")
            self.buffer += data
        data = bytes(self.buffer[:size])
        del self.buffer[:size]
        return data

    def pending(self) -> bool:
        return bool(self.buffer)


def handshake(stream: Stream, sock: socket.socket) -> tuple[int, int]:
    """Version, security None, shared ClientInit, our pixel format and Raw encoding; the
    desktop's (width, height) from the ServerInit."""
    version = stream.read(12)
    if not version.startswith(b"RFB "):
        raise RfbError(f"not a VNC server (it said {version!r})")
    sock.sendall(b"RFB 003.008\n")
    count = stream.read(1)[0]
    if count == 0:
        reason = stream.read(struct.unpack(">I", stream.read(4))[0])
        raise RfbError(f"the VNC server refused us: {reason.decode(errors='replace')}")
    types = stream.read(count)
    if 1 not in types:
        raise RfbError(f"the VNC server wants authentication (types {list(types)})")
    sock.sendall(b"\x01")
    if struct.unpack(">I", stream.read(4))[0] != 0:
        raise RfbError("the VNC server refused the connection")
    sock.sendall(b"\x01")  # ClientInit: shared, other viewers stay
    width, height = struct.unpack(">HH", stream.read(4))
    stream.read(16)  # the server's pixel format: we set ours below
    stream.read(struct.unpack(">I", stream.read(4))[0])  # desktop name
    # SetPixelFormat: 32 bpp, depth 24, little endian, true colour, 8 bits per channel
    sock.sendall(struct.pack(">B3xBBBBHHHBBB3x", 0, 32, 24, 0, 1, 255, 255, 255, 16, 8, 0))
    sock.sendall(struct.pack(">BxHi", 2, 1, 0))  # SetEncodings: Raw only
    return width, height


def _request(sock: socket.socket, width: int, height: int, incremental: bool) -> None:
    sock.sendall(struct.pack(">BBHHHH", 3, int(incremental), 0, 0, width, height))


def _apply_update(stream: Stream, frame: bytearray, width: int) -> None:
    (count,) = struct.unpack(">xH", stream.read(3))  # padding, number of rectangles
    for _ in range(count):
        x, y, w, h, encoding = struct.unpack(">HHHHi", stream.read(12))
        if encoding != 0:
            raise RfbError(f"unexpected encoding {encoding}")
        pixels = stream.read(w * h * 4)
        for row in range(h):
            start = ((y + row) * width + x) * 4
            frame[start:start + w * 4] = pixels[row * w * 4:(row + 1) * w * 4]


def _skip_message(stream: Stream, kind: int) -> None:
    if kind == 1:  # SetColourMapEntries
        _first, count = struct.unpack(">xHH", stream.read(5))
        stream.read(count * 6)
    elif kind == 2:  # Bell
        pass
    elif kind == 3:  # ServerCutText
        stream.read(struct.unpack(">3xI", stream.read(7))[0])
    else:
        raise RfbError(f"unknown server message {kind}")


def screenshot(sock: socket.socket, early: bytes = b"", settle: float = 1.0,
               timeout: float = 30.0) -> tuple[int, int, bytes]:
    """(width, height, RGB bytes) of the desktop behind sock."""
    stream = Stream(sock, early)
    sock.settimeout(timeout)
    width, height = handshake(stream, sock)
    frame = bytearray(width * height * 4)
    _request(sock, width, height, incremental=False)
    got_full, until = False, None
    while True:
        if got_full:
            left = until - time.monotonic()
            if left <= 0:
                break
            sock.settimeout(left)
        try:
            kind = stream.read(1)[0]
        except (socket.timeout, TimeoutError):
            if not got_full:
                raise RfbError("the desktop sent no picture in time") from None
            break
        if kind == 0:
            _apply_update(stream, frame, width)
            if not got_full:
                got_full, until = True, time.monotonic() + settle
            if time.monotonic() < until:
                _request(sock, width, height, incremental=True)
        else:
            _skip_message(stream, kind)
    rgb = bytearray(width * height * 3)
    rgb[0::3], rgb[1::3], rgb[2::3] = frame[2::4], frame[1::4], frame[0::4]  # BGRX -> RGB
    return width, height, bytes(rgb)
