"""QVD's own desktop session (vma.x_session=desktop; the default inside a VM that has its
pieces): Openbox manages the windows, LXDE's panel sits at the bottom with the applications
menu, launchers, the task bar and a clock, PCManFM paints the background and is the file
manager, and a terminal is open at start so the user can type at once.

    DISPLAY=:1 python3 -m qvd.vma.desktop    # what the agent runs on the session's display

No session manager (lxsession), no polkit agent, no D-Bus session bus: nothing that pops up
dialogs or "no session for pid" in a VM without a system bus or a network. The settings are
ours (desktop_config.py). The pieces' messages go to ~/.xsession-errors, as display managers
do. The session lasts as long as the window manager; the menu's Logout ends it.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile

from . import desktop_config

PIECES = ("openbox", "lxpanel", "pcmanfm", "lxterminal")
KEYWORD = "desktop"  # vma.x_session=desktop, qvd-vma --session desktop


def missing() -> list[str]:
    return [program for program in PIECES if not shutil.which(program)]


def command() -> list[str]:
    """How the agent runs this session: its own Python (in an image, the system's python3
    with the agent's PYTHONPATH, which the session inherits)."""
    return [sys.executable, "-m", "qvd.vma.desktop"]


def environment(config: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(XDG_CONFIG_DIRS=f"{config}:{os.environ.get('XDG_CONFIG_DIRS') or '/etc/xdg'}",
               XDG_MENU_PREFIX="qvd-", XDG_CURRENT_DESKTOP="LXDE", DESKTOP_SESSION="qvd",
               NO_AT_BRIDGE="1")  # no accessibility bus to look for
    # a prompt that names the user and host, for images without a ~/.bashrc of their own
    env.setdefault("PS1", r"\u@\h:\w\$ ")
    # GLib would try to autolaunch a session bus per program; there is none to reach
    env["DBUS_SESSION_BUS_ADDRESS"] = "disabled:"
    return env


def _log(home: str):
    try:
        return open(os.path.join(home, ".xsession-errors"), "ab")
    except OSError:
        return subprocess.DEVNULL


def _end(procs: list[subprocess.Popen]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    for proc in procs:
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main() -> int:
    absent = missing()
    if absent:
        print(f"qvd desktop: not installed: {', '.join(absent)}", file=sys.stderr)
        return 1
    if not os.environ.get("DISPLAY"):
        print("qvd desktop: DISPLAY is not set (the agent runs this on the session's display)",
              file=sys.stderr)
        return 1
    home = os.environ.get("HOME") or os.getcwd()
    config = tempfile.mkdtemp(prefix="qvd-desktop-")
    # the agent stops a session with SIGTERM to its group: clean up on the way out
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    log = _log(home)
    procs: list[subprocess.Popen] = []
    try:
        desktop_config.write(config)
        env = environment(config)

        def spawn(*args: str) -> subprocess.Popen:
            proc = subprocess.Popen(args, env=env, cwd=home, stdin=subprocess.DEVNULL,
                                    stdout=log, stderr=log)
            procs.append(proc)
            return proc
        window_manager = spawn("openbox")
        spawn("lxpanel", "--profile", desktop_config.PROFILE)
        spawn("pcmanfm", "--desktop", "--profile", desktop_config.PROFILE)
        spawn("lxterminal", f"--working-directory={home}")
        return window_manager.wait()
    finally:
        _end(procs)
        shutil.rmtree(config, ignore_errors=True)
        if log is not subprocess.DEVNULL:
            log.close()


if __name__ == "__main__":
    sys.exit(main())
