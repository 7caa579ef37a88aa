"""The VNC desktop session: TigerVNC's Xvnc on the VM's address and desktop port, running the
session command (vma.x_session) as its first client. Any VNC viewer, or noVNC, can be served
through the L7R's tunnel. Xvnc serves several viewers: a second client reattaches.

States (QVD's names): stopped -> starting -> listening; back to stopped when Xvnc exits.
"""
from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
import threading
import time

log = logging.getLogger("qvd.vma.session")


def free_display(first: int = 100) -> int:
    for number in range(first, first + 1000):
        if not os.path.exists(f"/tmp/.X{number}-lock") and \
                not os.path.exists(f"/tmp/.X11-unix/X{number}"):
            return number
    raise RuntimeError("no free X display")


def default_session() -> list[str] | None:
    for program in ("startlxde", "startxfce4", "xterm"):
        if shutil.which(program):
            return [program]
    return None


class VncSession:
    def __init__(self, address: str, port: int):
        self.address, self.port = address, port
        self.state = "stopped"
        self.xvnc: subprocess.Popen | None = None
        self.client: subprocess.Popen | None = None
        self.lock = threading.Lock()

    def _listening(self) -> bool:
        try:
            socket.create_connection((self.address, self.port), timeout=0.5).close()
            return True
        except OSError:
            return False

    def refresh(self) -> str:
        with self.lock:
            if self.xvnc is not None and self.xvnc.poll() is not None:
                log.info("Xvnc exited (%s)", self.xvnc.returncode)
                self.stop_locked()
            return self.state

    def start(self, params: dict[str, str], command: list[str] | None) -> str:
        """Start (or keep) the session; returns the state."""
        with self.lock:
            if self.state != "stopped":
                return self.state
            xvnc = shutil.which("Xvnc")
            if xvnc is None:
                raise RuntimeError("Xvnc is not installed in this image")
            display = free_display()
            geometry = params.get("qvd.client.geometry") or "1024x768"
            self.xvnc = subprocess.Popen(
                [xvnc, f":{display}", "-rfbport", str(self.port), "-interface", self.address,
                 "-SecurityTypes", "None", "-geometry", geometry, "-depth", "24",
                 "-AlwaysShared", "-nolisten", "tcp"],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                start_new_session=True)
            self.state = "starting"
            deadline = time.monotonic() + 10
            while not self._listening():
                if self.xvnc.poll() is not None or time.monotonic() > deadline:
                    self.stop_locked()
                    raise RuntimeError("Xvnc did not start")
                time.sleep(0.05)
            if command:
                self.client = subprocess.Popen(command, env=dict(os.environ,
                                                                 DISPLAY=f":{display}"),
                                               stdin=subprocess.DEVNULL,
                                               stdout=subprocess.DEVNULL,
                                               stderr=subprocess.DEVNULL,
                                               start_new_session=True)
            self.state = "listening"
            log.info("VNC session on display :%d, %s:%d", display, self.address, self.port)
            return self.state

    def stop_locked(self) -> None:
        for proc in (self.client, self.xvnc):
            if proc is not None and proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
                try:
                    proc.wait(5)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
        self.client = self.xvnc = None
        self.state = "stopped"

    def stop(self) -> None:
        with self.lock:
            self.stop_locked()
