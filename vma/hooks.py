"""Admin hooks (QVD's vma.on_action.* and vma.on_state.*), named by the VM's properties.

A hook is run as `script key value key value ... qvd.hook.on_action ACTION` with the session's
properties, as QVD does. Action hooks run before the action and may veto it (non-zero exit);
state hooks run detached after the fact and can only log.
"""
from __future__ import annotations

import logging
import subprocess
import threading

log = logging.getLogger("qvd.vma.hooks")
HOOK_TIMEOUT = 30.0


class HookFailed(Exception):
    pass


def _arguments(props: dict[str, str], *extra: str) -> list[str]:
    args: list[str] = []
    for key, value in sorted(props.items()):
        if not key.startswith(("vma.on_action.", "vma.on_state.")):
            args += [key, value]
    return args + list(extra)


def _run(script: str, args: list[str]) -> int:
    try:
        done = subprocess.run([script, *args], stdin=subprocess.DEVNULL, capture_output=True,
                              timeout=HOOK_TIMEOUT)
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.warning("hook %s: %s", script, exc)
        return -1
    for line in (done.stdout + done.stderr).decode("utf-8", "replace").splitlines():
        log.info("hook %s: %s", script, line)
    return done.returncode


def on_action(props: dict[str, str], action: str, state: str) -> None:
    script = props.get(f"vma.on_action.{action}")
    if not script:
        return
    code = _run(script, _arguments(props, "qvd.vm.session.state", state,
                                   "qvd.hook.on_action", action))
    if code != 0:
        raise HookFailed(f"the {action} hook failed (exit {code})")


def on_state(props: dict[str, str], state: str) -> None:
    script = props.get(f"vma.on_state.{state}")
    if script:
        threading.Thread(target=_run, args=(script, _arguments(props, "qvd.hook.on_state", state)),
                         daemon=True).start()
