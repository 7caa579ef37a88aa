"""A desktop session inside the VM, as a state machine (QVD-REFERENCE §5).

The display server (Xvnc or nxagent) reports what happens on its log; a reader thread turns
those lines into transitions. The table below is the whole life of a session; a transition
not in it is a bug and raises. Timeouts: a new session nobody connects to is stopped; a
resumed one that nobody takes goes back to `suspended` (the desktop never vanishes for that);
starting, suspending and stopping are bounded.

A pool's spare VM has no user yet: its display server is started ahead (`prepared`, with no
desktop and no timeout), and the first user's x_start takes it over (the geometry set to the
client's, the desktop command started as the user), saving the display server's start.
"""
from __future__ import annotations

import fcntl
import logging
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from typing import Callable

log = logging.getLogger("qvd.vma.session")

TRANSITIONS: dict[str, set[str]] = {
    "stopped": {"starting", "preparing"},
    "preparing": {"prepared", "stopping", "stopped"},
    "prepared": {"listening", "stopping", "stopped"},
    "starting": {"listening", "stopping", "stopped"},
    "listening": {"connected", "suspended", "stopping", "stopped"},
    "connected": {"suspending", "suspended", "listening", "stopping", "stopped"},
    "suspending": {"suspended", "stopping", "stopped"},
    "suspended": {"starting", "listening", "stopping", "stopped"},
    "stopping": {"stopped"},
}

LIVE = ("preparing", "prepared", "starting", "listening", "connected", "suspending",
        "suspended")


def _display_used(number: int) -> bool:
    return os.path.exists(f"/tmp/.X{number}-lock") or os.path.exists(f"/tmp/.X11-unix/X{number}")


def free_display(first: int = 100) -> int:
    """A display number no X server holds now (one-off servers of tests and benches)."""
    return next(n for n in range(first, first + 1000) if not _display_used(n))


def reserve_display(first: int = 100) -> tuple[int, int]:
    """A free display number and the descriptor that holds it (flock) until closed: two
    agents sharing /tmp (the process backend) starting at once never pick the same one,
    which the X server's own lock file only says once it runs."""
    for number in range(first, first + 1000):
        if _display_used(number):
            continue
        try:
            fd = os.open(f"/tmp/.qvd-display-{number}", os.O_CREAT | os.O_RDWR, 0o600)
        except OSError:  # another account's reservation
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue
        if not _display_used(number):  # no server came up between the look and the lock
            return number, fd
        os.close(fd)
    raise SessionError("no free X display")


def x_socket_dirs() -> None:
    """/tmp/.X11-unix as the X server wants it (root's, sticky): a server started as the
    desktop's account cannot make it itself. What a distribution's boot scripts do."""
    if os.geteuid() != 0:
        return
    for directory in ("/tmp/.X11-unix", "/tmp/.ICE-unix"):
        os.makedirs(directory, exist_ok=True)
        os.chown(directory, 0, 0)
        os.chmod(directory, 0o1777)


def end_group(proc: subprocess.Popen | None, grace: float = 5.0) -> None:
    """TERM the process group, then KILL it if it lingers."""
    if proc is None or proc.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, None)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue


class SessionError(Exception):
    """The session cannot do what was asked; the message says why (sent to the caller)."""


class DesktopSession:
    """What Xvnc and nxagent sessions share: the state table, timeouts, the session command."""
    kind = "?"
    preparable = False  # whether the display server can start before its client is known

    def __init__(self, on_state: Callable[[str, dict], None]):
        self.on_state = on_state
        self.state, self.since = "stopped", time.monotonic()
        self.resumed = False  # a resumed session falls back to suspended, never dies, on timeout
        self.server: subprocess.Popen | None = None
        self.desktop: subprocess.Popen | None = None
        self.display = 0
        self.props: dict[str, str] = {}
        self.command: list[str] | None = None
        self.account = None  # provision.Account: the session runs as it (None: as the agent)
        self.endpoint: tuple[int, object] | None = None  # where the relay reaches the server
        self.display_hold: int | None = None  # reserve_display's descriptor
        self.last_failure = "it gave no reason"  # the display server's last fatal error
        self.lock = threading.RLock()
        self.moved = threading.Condition(self.lock)  # notified at each transition

    # --- the state machine ------------------------------------------------------------------
    def move(self, new: str) -> None:
        with self.lock:
            if new == self.state:
                return
            if new not in TRANSITIONS[self.state]:
                raise AssertionError(f"{self.kind} session: {self.state} -> {new} is not allowed")
            log.info("%s session: %s -> %s", self.kind, self.state, new)
            self.state, self.since = new, time.monotonic()
            if new == "listening" and self.desktop is None and self.command:
                self._start_desktop()  # only now does the display accept X clients
            self.moved.notify_all()
        self.on_state(new, self.props)

    def private_dir(self) -> str:
        """A directory only the session's account (and root) may enter: its sockets' home."""
        path = tempfile.mkdtemp(prefix=f"qvd-{self.kind}-")
        if self.account is not None:
            os.chown(path, self.account.uid, self.account.gid)
        return path

    def spawn_args(self) -> dict:
        """Popen arguments of the session's processes: as the account, when there is one."""
        args = {"stdin": subprocess.DEVNULL, "start_new_session": True}
        if self.account is not None:
            args.update(self.account.popen_args())
        return args

    def _start_desktop(self) -> None:
        args = self.spawn_args()
        args["env"] = dict(args.get("env", os.environ), DISPLAY=f":{self.display}")
        try:
            self.desktop = subprocess.Popen(self.command, stdout=subprocess.DEVNULL,
                                            stderr=subprocess.DEVNULL, **args)
        except OSError as exc:
            log.warning("%s session: cannot run %s: %s", self.kind, self.command, exc)

    def timeout(self, name: str) -> float:
        return float(self.props.get(f"vma.timeout.{name}") or {"listening": 10}.get(name, 20))

    def tick(self) -> None:
        """Called twice a second: notice dead processes, enforce the timeouts."""
        with self.lock:
            if self.state == "stopped":
                return
            if self.server is None or self.server.poll() is not None:
                log.info("%s session: display server exited", self.kind)
                self._release()
                return
            if self.desktop is not None and self.desktop.poll() is not None \
                    and self.state != "stopping":
                log.info("%s session: the desktop command ended, ending the session", self.kind)
                self.stop()
                return
            waited = time.monotonic() - self.since
            if self.state == "listening" and waited > self.timeout("listening"):
                if self.resumed:
                    self.give_back()
                else:
                    log.info("%s session: nobody connected in time", self.kind)
                    self.stop()
            elif self.state in ("starting", "preparing") and not self.resumed and \
                    waited > self.timeout("starting"):
                log.info("%s session: the display server did not come up, killing it",
                         self.kind)
                self.kill()
            elif self.state in ("suspending", "stopping") and waited > self.timeout(self.state):
                log.info("%s session: %s took too long, killing it", self.kind, self.state)
                self.kill()

    # --- actions ----------------------------------------------------------------------------
    def start(self, props: dict[str, str], command: list[str] | None) -> str:
        """The session for a client: a new one, the prepared one taken over, or the live one
        made ready again. While it is being prepared, nothing yet: the caller waits."""
        with self.lock:
            if self.state == "prepared" and not self.take_over(props):
                log.info("%s session: the prepared display does not fit, starting anew",
                         self.kind)
                self.kill()
            if self.state == "stopped":
                self._launch("starting", props, command)
            elif self.state == "prepared":
                self.props, self.command = dict(props), command
                self.move("listening")  # which starts the desktop, as the user
            elif self.state != "preparing":
                self.props.update(props)
                self.reattach()
            return self.state

    def prepare(self, props: dict[str, str]) -> str:
        """The display server alone, for a client not known yet (a pool's spare); a kind
        that starts with its client (NX) stays stopped."""
        with self.lock:
            if self.preparable and self.state == "stopped":
                self._launch("preparing", props, None)
            return self.state

    def _launch(self, first_state: str, props: dict[str, str], command: list[str] | None):
        self.props = dict(props)
        self.resumed = False
        self.move(first_state)
        try:
            x_socket_dirs()
            self.display, self.display_hold = reserve_display()
            self.server = self.launch(props)
        except (OSError, SessionError):
            self._release()
            raise
        self.command = command
        threading.Thread(target=self._read_log, args=(self.server,), daemon=True).start()

    def _read_log(self, server: subprocess.Popen) -> None:
        fatal = False
        for raw in server.stdout:
            line = raw.decode("utf-8", "replace").rstrip()
            # the display server's own account of sessions and errors goes to the agent's log
            level = logging.INFO if line.startswith(("Session:", "Error", "Connections:")) \
                else logging.DEBUG
            log.log(level, "%s: %s", self.kind, line)
            with self.lock:
                if fatal:  # X servers say why on the line after this one
                    self.last_failure = line.removeprefix("(EE)").strip() or self.last_failure
                fatal = line.startswith("Fatal server error")
                if self.server is server:
                    self.on_log_line(line)

    def stop(self) -> str:
        with self.lock:
            if self.state in LIVE:
                self.move("stopping")
                for proc in (self.desktop, self.server):
                    if proc is not None and proc.poll() is None:
                        try:
                            os.killpg(proc.pid, signal.SIGTERM)
                        except ProcessLookupError:
                            pass
            return self.state

    def kill(self) -> None:
        with self.lock:
            for proc in (self.desktop, self.server):
                end_group(proc, grace=0)
            self._release()

    def stop_and_wait(self) -> None:
        with self.lock:
            for proc in (self.desktop, self.server):
                end_group(proc)
            self._release()

    def _release(self) -> None:
        if self.endpoint is not None:  # the session's private directory, its socket in it
            shutil.rmtree(os.path.dirname(self.endpoint[1]), ignore_errors=True)
        self.server = self.desktop = self.endpoint = None
        if self.display_hold is not None:
            os.close(self.display_hold)
            self.display_hold = None
        if self.state != "stopped":
            if self.state not in ("stopping", "starting", "preparing"):
                self.move("stopping")
            self.move("stopped")

    # --- what each kind of session does its own way -------------------------------------------
    def launch(self, props: dict[str, str]) -> subprocess.Popen:
        raise NotImplementedError

    def on_log_line(self, line: str) -> None:
        raise NotImplementedError

    def reattach(self) -> None:
        """x_start on a live session: make it ready for a new client."""
        raise NotImplementedError

    def take_over(self, props: dict[str, str]) -> bool:
        """Fit the prepared display to the client's options; False when it cannot be."""
        return False

    def suspend(self) -> str:
        raise NotImplementedError

    def give_back(self) -> None:
        """A resumed session nobody took: back to suspended."""
        raise NotImplementedError
