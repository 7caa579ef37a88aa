"""What a watching administrator's viewer may send to the desktop (RFB, client to server).

The viewer's handshake passes with its ClientInit forced to `shared` (an exclusive viewer
would make Xvnc drop the user's). After it, each message is parsed whole: a view-only watcher's
input (keys, pointer, clipboard, screen resizes) is dropped, what only asks for pictures
passes; an interactive watcher's messages all pass. A message this table does not know
ends the stream (its length is unknown, so nothing after it could be trusted).
"""
from __future__ import annotations

import struct


class ViewerError(Exception):
    """The viewer sent what cannot be passed on."""


def _fixed(size: int):
    return lambda buffer: size


def _set_encodings(buffer: bytes) -> int | None:
    return 4 + 4 * struct.unpack_from(">H", buffer, 2)[0] if len(buffer) >= 4 else None


def _cut_text(buffer: bytes) -> int | None:  # a negative length: extended clipboard
    return 8 + abs(struct.unpack_from(">i", buffer, 4)[0]) if len(buffer) >= 8 else None


def _fence(buffer: bytes) -> int | None:
    return 9 + buffer[8] if len(buffer) >= 9 else None


def _desktop_size(buffer: bytes) -> int | None:
    return 8 + 16 * buffer[6] if len(buffer) >= 8 else None


def _qemu(buffer: bytes) -> int | None:
    if len(buffer) < 2:
        return None
    if buffer[1] != 0:  # 0: extended key event; noVNC sends no other
        raise ViewerError(f"QEMU client message {buffer[1]} is not passed on")
    return 12


# message type -> (its length from what has arrived (None: not enough yet), input?)
MESSAGES = {
    0: (_fixed(20), False),       # SetPixelFormat
    2: (_set_encodings, False),   # SetEncodings
    3: (_fixed(10), False),       # FramebufferUpdateRequest
    4: (_fixed(8), True),         # KeyEvent
    5: (_fixed(6), True),         # PointerEvent
    6: (_cut_text, True),         # ClientCutText
    150: (_fixed(10), False),     # EnableContinuousUpdates
    248: (_fence, False),         # ClientFence
    250: (_fixed(4), True),       # xvp (shutdown, reboot)
    251: (_desktop_size, True),   # SetDesktopSize
    255: (_qemu, True),           # QEMU extended key event
}
HANDSHAKE = (12, 1, 1)  # ProtocolVersion, the security type chosen, ClientInit
VERSIONS = (b"RFB 003.008\n", b"RFB 003.007\n")
NONE_SECURITY = 1


class ViewerFilter:
    """feed(bytes) -> the bytes to pass on to the desktop."""

    def __init__(self, interactive: bool):
        self.interactive = interactive
        self.buffer = b""
        self.step = 0  # the handshake's steps passed

    def feed(self, data: bytes) -> bytes:
        self.buffer += data
        out = []
        while self.step < len(HANDSHAKE):
            size = HANDSHAKE[self.step]
            if len(self.buffer) < size:
                return b"".join(out)
            part, self.buffer = self.buffer[:size], self.buffer[size:]
            out.append(self._handshake(part))
            self.step += 1
        while self.buffer:
            kind = self.buffer[0]
            if kind not in MESSAGES:
                raise ViewerError(f"unknown RFB client message {kind}")
            length, is_input = MESSAGES[kind]
            size = length(self.buffer)
            if size is None or len(self.buffer) < size:
                break
            message, self.buffer = self.buffer[:size], self.buffer[size:]
            if self.interactive or not is_input:
                out.append(message)
        return b"".join(out)

    def _handshake(self, part: bytes) -> bytes:
        if self.step == 0 and part not in VERSIONS:
            raise ViewerError(f"RFB version {part!r} is not spoken here")
        if self.step == 1 and part[0] != NONE_SECURITY:
            raise ViewerError("the viewer chose a security type the desktop does not offer")
        return b"\x01" if self.step == 2 else part  # ClientInit: shared, always
