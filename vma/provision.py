"""The desktop's account inside the VM (QVD's provisioning): qvd.vm.user.name with
qvd.vm.user.uid / .gid (LDAP's when the login came through LDAP), home qvd.auth.home or
<qvd.vm.user.home>/<name>, shell qvd.vm.user.shell. Created with groupadd/useradd the first
time a session starts in this VM; the home lives on the VM's persistent home volume."""
from __future__ import annotations

import grp
import os
import pwd
import re
import subprocess
from dataclasses import dataclass

from .session import SessionError

NAME = re.compile(r"^[a-z_][a-z0-9_.-]{0,31}$")


@dataclass
class Account:
    name: str
    uid: int
    gid: int
    home: str
    shell: str

    def popen_args(self) -> dict:
        """What subprocess.Popen needs to run a program as this account, in its home."""
        env = dict(os.environ, HOME=self.home, USER=self.name, LOGNAME=self.name,
                   SHELL=self.shell)
        return {"user": self.uid, "group": self.gid, "extra_groups": [], "env": env,
                "cwd": self.home}


def _run(*command: str) -> None:
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise SessionError(f"{command[0]} failed: {done.stderr.strip() or done.returncode}")


def ensure_account(props: dict[str, str]) -> Account:
    name = props.get("qvd.vm.user.name") or "qvd"
    if not NAME.match(name):
        raise SessionError(f"qvd.vm.user.name {name!r} is not a valid account name")
    try:
        found = pwd.getpwnam(name)
        return Account(name, found.pw_uid, found.pw_gid, found.pw_dir, found.pw_shell)
    except KeyError:
        pass
    try:
        uid = int(props.get("qvd.vm.user.uid") or 1000)
        gid = int(props.get("qvd.vm.user.gid") or uid)
    except ValueError:
        raise SessionError("qvd.vm.user.uid and .gid must be numbers") from None
    home = props.get("qvd.auth.home") or os.path.join(props.get("qvd.vm.user.home") or "/home",
                                                      name)
    shell = props.get("qvd.vm.user.shell") or "/bin/sh"
    try:
        grp.getgrgid(gid)
    except KeyError:
        _run("groupadd", "-g", str(gid), name)
    _run("useradd", "-m", "-d", home, "-u", str(uid), "-g", str(gid), "-s", shell, name)
    return Account(name, uid, gid, home, shell)
