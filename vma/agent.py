"""What the agent does for each RPC method (QVD-REFERENCE §5). The HTTP side is in main.py.

The L7R's x_start carries everything the session needs: the VM's merged properties (OSF < DI
< user < VM), the node's vma.* settings and the client's qvd.client.* options. The agent keeps
the last ones for the hooks of later actions (stop, poweroff, expire).

x_prepare (from qvd-hkd, for a pool's spare VM that has no user yet) starts the display server
alone with what is known before the user (the VM's properties, the node's settings); the
first x_start takes it over.
"""
from __future__ import annotations

import logging
import os
import threading
import time

from . import desktop, hooks
from .nx_session import NxSession
from .provision import ensure_account
from .session import DesktopSession, SessionError
from .vnc_session import VncSession

log = logging.getLogger("qvd.vma")
SESSION_TYPES = {"vnc": VncSession, "nx": NxSession}


class BadRequest(Exception):
    """400: the caller sent parameters that cannot be right."""


class Agent:
    def __init__(self, session_command: list[str] | None = None,
                 provision: bool = False) -> None:
        self.provision = provision
        self.started = time.time()
        self.expiration: dict[str, str] = {}
        self.session_command = session_command
        self.props: dict[str, str] = {}
        self.session: DesktopSession = VncSession(self._state_changed)
        threading.Thread(target=self._supervise, daemon=True).start()

    def _state_changed(self, state: str, props: dict[str, str]) -> None:
        hooks.on_state(props, state)

    def _supervise(self) -> None:
        while True:
            time.sleep(0.5)
            try:
                self.session.tick()
            except Exception:  # noqa: BLE001 - the supervisor must outlive any bug
                log.exception("session supervisor")

    def _command(self, props: dict[str, str]) -> list[str] | None:
        """vma.x_session (the admin's word), else the agent's default; `desktop` names
        QVD's own desktop session."""
        command = props.get("vma.x_session", "").split() or self.session_command
        if command == [desktop.KEYWORD]:
            absent = desktop.missing()
            if absent:
                raise SessionError(f"vma.x_session=desktop: this image lacks {', '.join(absent)}")
            return desktop.command()
        return command

    def desktop_socket(self):
        """Where the desktop relay reaches the live session's display server, or None."""
        session = self.session
        return session.endpoint if session.state in ("listening", "connected") else None

    # --- RPC methods ----------------------------------------------------------------------
    def ping(self, params):
        return {"status": "ok", "uptime": round(time.time() - self.started, 3),
                "expiration": self.expiration}

    def x_state(self, params):
        self.session.tick()
        return {"x_state": self.session.state, "session": self.session.kind,
                "display": self.session.display if self.session.state != "stopped" else None}

    def _session_of(self, params) -> DesktopSession:
        """The session (a new one of the kind asked for, when none is live)."""
        kind = params.get("vma.session.type") or "vnc"
        if kind not in SESSION_TYPES:
            raise BadRequest(f"unknown vma.session.type {kind!r} (nx or vnc)")
        with self.session.lock:
            self.session.tick()
            if self.session.kind != kind and self.session.state in ("stopped", "prepared"):
                self.session.kill()  # a prepared display of the other kind is of no use
                self.session = SESSION_TYPES[kind](self._state_changed)
            return self.session

    def x_start(self, params):
        session = self._session_of(params)
        with session.lock:
            self.props = dict(params)
            try:
                hooks.on_action(self.props, "pre-connect", session.state)
                state = "preparing"
                while state in ("preparing", "prepared"):  # being prepared: wait, take it
                    if self.provision and session.state in ("stopped", "prepared"):
                        self._provide_account(session, self.props)
                    state = self._settled(session, session.start(self.props,
                                                                  self._command(self.props)))
                hooks.on_action(self.props, "connect", state)
            except (SessionError, hooks.HookFailed, OSError) as exc:
                return {"error": str(exc), "x_state": session.state, "session": session.kind}
            return {"x_state": state, "session": session.kind}

    @staticmethod
    def _provide_account(session: DesktopSession, props: dict[str, str]) -> None:
        """The account the session runs as (made when missing). A display prepared as another
        (the user's LDAP uid differs from the settings') cannot be theirs: it goes."""
        account = ensure_account(props)
        if session.state == "prepared" and account != session.account:
            log.info("%s session: prepared as %s, wanted as %s: starting anew", session.kind,
                     session.account.name if session.account else "the agent", account.name)
            session.kill()
        session.account = account

    def x_prepare(self, params):
        session = self._session_of(params)
        with session.lock:
            try:
                if self.provision and session.preparable and session.state == "stopped":
                    session.account = ensure_account(params)  # Xvnc runs as the user will
                state = self._settled(session, session.prepare(params))
                if session.preparable and state == "stopped":
                    raise SessionError(f"the display server ended as it started: "
                                       f"{session.last_failure}")
            except (SessionError, OSError) as exc:
                return {"error": str(exc), "x_state": session.state, "session": session.kind}
            return {"x_state": state, "session": session.kind}

    @staticmethod
    def _settled(session: DesktopSession, state: str, within: float = 5.0) -> str:
        """Answer once a starting session listens, or a preparing one is prepared (saves
        the caller a round of polling); the log reader moves it, so the lock is let go."""
        deadline = time.monotonic() + within
        while state in ("starting", "preparing") and time.monotonic() < deadline:
            session.moved.wait(deadline - time.monotonic())
            state = session.state
        return state

    def x_suspend(self, params):
        self._hook("suspend")
        return {"x_state": self.session.suspend(), "session": self.session.kind}

    def x_stop(self, params):
        self._hook("stop")
        return {"x_state": self.session.stop(), "session": self.session.kind}

    def expire(self, params):
        expiration = {k: v for k, v in params.items() if k in ("soft", "hard") and v}
        for key, value in expiration.items():
            try:
                float(value)
            except ValueError:
                raise BadRequest(f"{key} must be a Unix time, not {value!r}") from None
        self.expiration = expiration
        log.info("expiration announced: %s", self.expiration)
        self._hook("expire")
        return {"status": "ok"}

    def poweroff(self, params):
        self._hook("poweroff")
        # Answer first, then "power off": this agent is the VM's main process.
        threading.Thread(target=self._power_off, daemon=True).start()
        return {"status": "ok"}

    def _power_off(self) -> None:
        time.sleep(0.1)
        self.session.stop_and_wait()
        os._exit(0)

    def _hook(self, action: str) -> None:
        try:
            hooks.on_action(self.props, action, self.session.state)
        except hooks.HookFailed as exc:
            log.warning("%s (carrying on)", exc)  # stopping and powering off are not vetoable
