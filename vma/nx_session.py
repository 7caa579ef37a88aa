"""The NX desktop session: nxagent, what QVD clients expect. nxagent listens on the desktop port
for the client's nxproxy (through the L7R's tunnel); when the client goes away it suspends the
session, and SIGHUP makes a suspended session wait for a client again (resume). Its log says
what it is doing ("Session: Session suspended at ..."), which drives the states.

The client's options (keyboard, geometry, link...) go into an options file that nxagent reads
when it starts and again on every resume.
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time

from .session import TRANSITIONS, DesktopSession, SessionError, log

CLIENT_OPTIONS = {"qvd.client.keyboard": "keyboard", "qvd.client.os": "client",
                  "qvd.client.link": "link", "qvd.client.geometry": "geometry",
                  "qvd.client.fullscreen": "fullscreen"}
SAFE_VALUE = re.compile(r"^[\w/+\-]+$")

# nxagent's words -> our states
NX_STATES = {"started": "connected",
             "resumed": "connected", "suspending": "suspending", "suspended": "suspended",
             "terminating": "stopping", "aborting": "stopping"}
SESSION_LINE = re.compile(r"Session: (?:(\w+) session at|Session (\w+) at)")
WAITING_LINE = "Info: Waiting for connection from"  # only now does the port accept clients


class NxSession(DesktopSession):
    kind = "nx"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # the agent's own directory (the account may read the file, not replace it)
        options_dir = tempfile.mkdtemp(prefix="qvd-nx-options-")
        os.chmod(options_dir, 0o711)
        self.options_file = os.path.join(options_dir, "options")

    def write_options(self, props: dict[str, str]) -> None:
        options = ["nx/nx", f"listen=unix:{self.endpoint[1]}"]
        for key, name in CLIENT_OPTIONS.items():
            value = props.get(key)
            if value:
                if not SAFE_VALUE.match(value):
                    raise SessionError(f"invalid characters in {key}")
                options.append(f"{name}={value}")
        partial = self.options_file + ".tmp"
        with open(partial, "w", encoding="ascii") as handle:
            handle.write(",".join(options) + f":{self.display}\n")
        os.replace(partial, self.options_file)

    def launch(self, props: dict[str, str]) -> subprocess.Popen:
        nxagent = shutil.which("nxagent")
        if nxagent is None:
            raise SessionError("nxagent is not installed in this image")
        # nxagent listens on a Unix socket of the session's account, never on a TCP port:
        # only the agent's relay (after the node's secret) passes clients on to it.
        self.endpoint = (socket.AF_UNIX, os.path.join(self.private_dir(), "nx"))
        self.write_options(props)
        return subprocess.Popen(
            [nxagent, f":{self.display}", "-ac", "-name", "QVD", "-nolisten", "tcp",
             "-display", f"nx/nx,options={self.options_file}:{self.display}"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **self.spawn_args())

    def on_log_line(self, line: str) -> None:
        if WAITING_LINE in line and self.state == "starting":
            self.move("listening")
            return
        found = SESSION_LINE.search(line)
        state = found and NX_STATES.get((found.group(1) or found.group(2)).lower())
        # nxagent repeats what we already know (e.g. "resuming" after our own SIGHUP)
        if state and state in TRANSITIONS[self.state]:
            self.move(state)

    def _hup(self) -> None:
        try:
            os.kill(self.server.pid, signal.SIGHUP)
        except (ProcessLookupError, AttributeError):
            pass

    def reattach(self) -> None:
        if self.state == "suspended":
            self.write_options(self.props)
            self.resumed = True
            self._hup()  # resume: nxagent listens for a client again (its log will say)
            self.move("starting")
        elif self.state == "connected":
            self.suspend()  # the old client is cut; the caller retries once it is suspended

    def suspend(self) -> str:
        if self.state in ("listening", "connected"):
            self._hup()
            if self.state == "connected":
                self.move("suspending")
        return self.state

    def tick(self) -> None:
        super().tick()
        with self.lock:
            # nxagent ignores a SIGHUP that arrives while it is still settling into
            # `suspended`: ask again until it says it waits for the client.
            if self.state == "starting" and self.resumed and time.monotonic() - self.since > 1.5:
                log.info("nx session: no resume yet, asking nxagent again")
                self._hup()
                self.since = time.monotonic()

    def give_back(self) -> None:
        self._hup()  # stop waiting for a client: suspended again
        self.move("suspended")
