"""connect_to_vm, step by step (QVD-REFERENCE §2), event-driven: the connection LISTENs on the
VM's state channel instead of polling. Each step reports progress as `102 Processing`.

Take the desktop over from another connection, place and start the VM, wait for it to run,
ask its agent for the desktop session, connect to it, answer 101 and carry the stream both
ways; the `sessions` row records who, where, how many bytes and why it ended.
"""
from __future__ import annotations

import os
import secrets
import socket
import time

from qvd.db.notify import vm_state_channel
from qvd.db.runtime import vm_commands
from qvd.hkd import vma_wire
from qvd.vma import secret

from . import pools
from .http import HttpError
from .proxy import Traffic, splice
from .session_end import GIVE_BACK, SessionEnd, journal, journal_dir, write_with_retries
from .session_params import x_start_params

STATE_COLUMNS = """r.vm_state, r.vm_cmd, r.last_error, host(r.vm_address) AS address,
       r.vm_vma_port, r.vm_x_port, r.vma_secret, o.memory, v.id, v.pool_id"""

# Taking the VM returns its state, so a running VM needs no second read.
TAKE = f"""
UPDATE vm_runtimes r SET user_state = 'connecting', user_state_ts = now(), user_cmd = NULL,
       l7r_pid = %(pid)s, l7r_host_id = %(host)s
FROM vms v JOIN osfs o ON o.id = v.osf_id
WHERE r.vm_id = %(vm)s AND v.id = r.vm_id AND r.user_state = 'disconnected'
RETURNING {STATE_COLUMNS}"""

STATE = f"""
SELECT {STATE_COLUMNS}
FROM vm_runtimes r JOIN vms v ON v.id = r.vm_id JOIN osfs o ON o.id = v.osf_id
WHERE r.vm_id = %(vm)s"""

# Connected, and the session's row, in one statement (the UPDATE matches nothing when another
# connection took the VM over meanwhile: that one's end will tell).
OPEN_SESSION = """
WITH connected AS (
    UPDATE vm_runtimes SET user_state = 'connected', user_state_ts = now()
    WHERE vm_id = %(vm)s AND l7r_pid = %(pid)s AND l7r_host_id = %(host)s)
INSERT INTO sessions (user_id, login, vm_id, vm_name, host_id, host_name, client_address)
SELECT v.user_id, u.login || '@' || t.name, v.id, v.name, h.id, h.name, %(address)s
FROM vms v JOIN users u ON u.id = v.user_id JOIN tenants t ON t.id = u.tenant_id,
     hosts h WHERE v.id = %(vm)s AND h.id = %(host)s
RETURNING id"""


def unavailable(reason: str) -> HttpError:
    return HttpError(503, f"The requested virtual machine is not available: {reason}, "
                          "retry later.\n")


class Connect:
    def __init__(self, session, vm_id: int, params: list[tuple[str, str]]):
        self.session, self.db, self.vm_id, self.params = session, session.db, vm_id, params
        self.cfg = session.cfg
        self.key = {"vm": vm_id, "pid": os.getpid(), "host": session.host_id}

    def progress(self, text: str) -> None:
        self.session.http.interim(102, [("X-QVD-VM-Info", text)])

    def _wait_state(self, done, timeout: float) -> str | None:
        """Wait for a state notification whose payload satisfies done(vm_state, user_state)."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            for note in self.db.conn.notifies(timeout=left, stop_after=1):
                vm_state, _, user_state = note.payload.partition(":")
                if done(vm_state, user_state):
                    return vm_state
        return None

    def take_over(self) -> dict:
        """Become the VM's connection; end another client's connection first, on any node.
        The VM's state as it was taken."""
        deadline = time.monotonic() + self.cfg.get_float("internal.l7r.timeout.takeover")
        asked = False
        while (vm := self.db.fetchone(TAKE, self.key)) is None:
            if not asked:
                self.session.count("takeovers")  # qvd-hkd's qvd_cluster_l7r_takeovers
                self.progress("Aborting previous connection")
                vm_commands.disconnect(self.db, self.vm_id)
                asked = True
            left = deadline - time.monotonic()
            if left <= 0 or self._wait_state(lambda _vm, user: user == "disconnected",
                                             left) is None:
                raise unavailable("the previous connection could not be ended")
        return vm

    def ensure_running(self, vm: dict) -> dict:
        if vm["vm_state"] == "running":
            return vm
        if vm["vm_state"] == "stopped" and vm["vm_cmd"] is None:
            self.progress("Assigning VM to host")
            sent = (vm_commands.place_and_start(self.db, self.cfg, self.vm_id, vm["memory"])
                    if vm["pool_id"] is None else pools.start_in_turn(self, vm))
            if sent is None:
                raise unavailable("too many desktops of its pool are starting")
            if sent is not vm_commands.Start.SENT:
                raise unavailable(sent.value)
            self.progress("Starting virtual machine")
        self.progress("Waiting for VM to reach state 'running'")
        seen = set()  # our own user_state change also notifies: "stopped" counts after a start

        def settled(state, _user):
            seen.add(state)
            return state == "running" or (state == "stopped" and len(seen) > 1)
        final = self._wait_state(settled, self.cfg.get_float("internal.l7r.timeout.vm_start"))
        vm = self.db.fetchone(STATE, self.key)
        if final != "running" or vm["vm_state"] != "running":
            raise unavailable(vm["last_error"] or f"it is {vm['vm_state']}")
        return vm

    def _vma(self, vm: dict, method: str, params=()) -> dict:
        """The agent's answer; its refusal as {"error": why}."""
        try:
            return vma_wire.blocking_call(vm["address"], vm["vm_vma_port"],
                                          vm["vma_secret"] or "", method, params,
                                          self.cfg.get_float("internal.l7r.timeout.x_start"))
        except vma_wire.VmaError as exc:
            if exc.refusal is not None:
                return {"error": exc.refusal}
            raise unavailable(f"the desktop session could not start ({exc})") from None

    def start_desktop(self, vm: dict) -> socket.socket:
        """x_start until the session listens (a previous one may first have to suspend:
        the reference's retries); then the TCP connection to it."""
        self.progress("Starting X session")
        params = self.desktop_params()
        deadline = time.monotonic() + self.cfg.get_float("internal.l7r.timeout.x_start")
        answer = self._vma(vm, "x_start", params)
        self.check_session_type(answer)
        while answer.get("x_state") != "listening":
            if answer.get("error") or time.monotonic() > deadline:
                raise unavailable("the desktop session could not start "
                                  f"({answer.get('error') or answer.get('x_state')})")
            time.sleep(0.1)
            ready_for_start = answer.get("x_state") in ("stopped", "suspended")
            answer = self._vma(vm, "x_start", params) if ready_for_start else \
                self._vma(vm, "x_state")
        self.progress("Connecting X session")
        desktop = None
        try:
            desktop = vma_wire.connect_numeric(vm["address"], vm["vm_x_port"], 10)
            desktop.sendall(secret.relay_greeting(vm["vma_secret"] or ""))
            return desktop
        except OSError as exc:
            if desktop is not None:
                desktop.close()
            raise unavailable(f"the desktop session does not answer ({exc})") from None

    def desktop_params(self) -> dict:
        return x_start_params(self.db, self.cfg, self.vm_id, self.session.identity, self.params)

    def check_session_type(self, answer: dict) -> None:
        """A client that speaks only one protocol refuses a session of the other (browser)."""

    def open_session(self) -> int:
        row = self.db.fetchone(OPEN_SESSION, dict(self.key, address=self.session.peer or None))
        return row["id"]

    def stream(self, desktop: socket.socket, session_id: int) -> None:
        """101, then the desktop stream with no database connection held; the session's end
        (bytes, reason) is journaled and written afterwards (session_end)."""
        early = self.switch()
        self.session.flush_counts()
        self.db.release()  # its LISTEN ends with it
        traffic, reason = Traffic(), "aborted"  # unless pump returns: SIGTERM (takeover)
        try:
            reason = self.pump(desktop, traffic, early)
        finally:
            desktop.close()
            end = SessionEnd(session=session_id, vm=self.vm_id, pid=self.key["pid"],
                             host=self.key["host"], up=traffic.up, down=traffic.down,
                             reason=reason, ended=time.time(),
                             short=self.cfg.get_int("internal.l7r.short_session"))
            write_with_retries(self.db, end, journal(journal_dir(self.cfg), end))

    def switch(self) -> bytes:
        """The client's side of the stream begins (101); bytes it already sent."""
        http = self.session.http
        http.interim(102, [("X-QVD-VM-Info", "Connection established")])
        return http.switch_protocols([("X-QVD-Slave-Key", secrets.token_hex(32))])

    def pump(self, desktop: socket.socket, traffic: Traffic, early: bytes) -> str:
        """Carry the stream until it ends; why it ended."""
        return splice(self.session.http.sock, desktop, traffic, early)

    def run(self) -> None:
        channel = vm_state_channel(self.vm_id)
        self.db.execute(f"LISTEN {channel}")
        try:
            vm = self.take_over()
            try:
                desktop = self.start_desktop(self.ensure_running(vm))
                session_id = self.open_session()
            except BaseException:
                self.db.execute(GIVE_BACK, dict(self.key, session=None))
                raise
        except BaseException:
            self.db.execute(f"UNLISTEN {channel}")  # the connection serves further requests
            raise
        self.stream(desktop, session_id)
