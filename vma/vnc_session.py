"""The VNC desktop session: TigerVNC's Xvnc on the VM's address and desktop port, running the
session command (vma.x_session). Any VNC viewer, or noVNC, can be served through the L7R's
tunnel. Xvnc outlives its viewers: when the last one leaves the session is `suspended`, and the
next x_start makes it `listening` again for the new client (the desktop is the same).

Xvnc says on its log when it listens and when viewers come and go; that drives the states.

A prepared Xvnc (a pool's spare) is taken over at the client's geometry through RandR
(xrandr, from x11-xserver-utils): a new mode of that size on Xvnc's one output.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess

from .session import DesktopSession, SessionError, log

GEOMETRY_CHARS = set("0123456789x")
DEFAULT_GEOMETRY = "1024x768"
OUTPUT = "VNC-0"  # Xvnc's RandR output


def geometry_of(props: dict[str, str]) -> str:
    geometry = props.get("qvd.client.geometry") or DEFAULT_GEOMETRY
    if not set(geometry) <= GEOMETRY_CHARS or geometry.count("x") != 1 or \
            not all(part.isdigit() for part in geometry.split("x")):
        raise SessionError(f"bad geometry {geometry!r} (expected WIDTHxHEIGHT)")
    return geometry


class VncSession(DesktopSession):
    kind = "vnc"
    preparable = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.viewers = 0
        self.geometry = DEFAULT_GEOMETRY

    def launch(self, props: dict[str, str]) -> subprocess.Popen:
        xvnc = shutil.which("Xvnc")
        if xvnc is None:
            raise SessionError("Xvnc is not installed in this image")
        geometry = self.geometry = geometry_of(props)
        self.viewers = 0
        path = os.path.join(self.private_dir(), "rfb")
        self.endpoint = (socket.AF_UNIX, path)
        # -SecurityTypes None: the TLS tunnel authenticated the user and the agent's relay
        # checked the node's secret; Xvnc has no TCP port at all, only this socket (0600).
        # Every viewer comes through the relay, one peer to Xvnc's per-host blacklist: its
        # default (5 unfinished handshakes; 0 does not turn it off) would lock the owner out
        # after a few dropped clients.
        return subprocess.Popen(
            [xvnc, f":{self.display}", "-rfbport", "-1", "-rfbunixpath", path,
             "-rfbunixmode", "0600", "-SecurityTypes", "None", "-geometry", geometry,
             "-depth", "24", "-AlwaysShared", "-BlacklistThreshold", "1000000",
             "-nolisten", "tcp"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **self.spawn_args())

    def on_log_line(self, line: str) -> None:
        if "created VNC server for screen" in line and self.state in ("starting", "preparing"):
            self.move("listening" if self.state == "starting" else "prepared")
        elif "Connections: accepted:" in line:
            self.viewers += 1
            if self.state == "listening":
                self.move("connected")
        elif "Connections: closed:" in line:
            self.viewers = max(0, self.viewers - 1)
            if self.viewers == 0 and self.state == "connected":
                self.move("suspended")

    def reattach(self) -> None:
        # Xvnc serves several viewers: the new client just connects, even while the old
        # viewer's connection is still being torn down (the L7R cut it already).
        if self.state in ("suspended", "connected"):
            self.resumed = True
            self.move("listening")

    def take_over(self, props: dict[str, str]) -> bool:
        try:
            geometry = geometry_of(props)
        except SessionError:
            return False  # started anew, the launch says why
        if geometry == self.geometry:
            return True
        xrandr = shutil.which("xrandr")
        if xrandr is None:
            log.info("vnc session: no xrandr in this image to resize the prepared display")
            return False
        width, height = geometry.split("x")
        mode = f"qvd-{geometry}"
        # one of Xvnc's own modes (the common sizes) in one call; any other made first
        if self._xrandr(xrandr, ["--fb", geometry, "--output", OUTPUT, "--mode", geometry]):
            for step in (["--newmode", mode, "0", width, "0", "0", width, height, "0", "0",
                          height],
                         ["--addmode", OUTPUT, mode],
                         ["--fb", geometry, "--output", OUTPUT, "--mode", mode]):
                error = self._xrandr(xrandr, step)
                if error is not None:
                    log.info("vnc session: xrandr %s: %s", step[0], error)
                    return False
        self.geometry = geometry
        return True

    def _xrandr(self, xrandr: str, args: list[str]) -> str | None:
        """None when done, else what xrandr said (never empty)."""
        done = subprocess.run([xrandr, "-display", f":{self.display}", *args],
                              capture_output=True, text=True, timeout=5, **self.spawn_args())
        return None if done.returncode == 0 else done.stderr.strip() or f"exit {done.returncode}"

    def suspend(self) -> str:
        return self.state  # Xvnc has nothing to suspend: viewers come and go

    def give_back(self) -> None:
        self.move("suspended")
