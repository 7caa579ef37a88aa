"""Administrators for the tests: made through the domain layer in this process, as the local
qvd-admin makes them (`admin add`, `admin role`: their CLI is tested in test_admins.py; two
qvd-admin runs would cost a second each), then used through `qvd-admin --admin NAME@TENANT`
with the password in QVD_ADMIN_PASSWORD."""
from __future__ import annotations

from dataclasses import dataclass

PASSWORD = "Adm1n-pass-Zq7"  # grepped for in the whole audit log: it must never be there


@dataclass
class AdminRun:
    env: object        # the QvdEnv (tests/conftest.py) whose database the admin lives in
    login: str         # name@tenant
    password: str = PASSWORD

    def cli(self, *args: str, totp: str | None = None, input: str | None = None):
        extra = {"QVD_ADMIN_PASSWORD": self.password}
        if totp is not None:
            extra["QVD_ADMIN_TOTP"] = totp
        return self.env.cli("--admin", self.login, *args, input=input, env=self.env.env(**extra))

    def ok(self, *args: str, **kw) -> str:
        result = self.cli(*args, **kw)
        assert result.returncode == 0, f"--admin {self.login} {' '.join(args)}: {result.stderr}"
        return result.stdout

    def refused(self, *args: str) -> str:
        """Run a command the administrator may not run; return the one line it got."""
        result = self.cli(*args)
        assert result.returncode == 1, f"{' '.join(args)} was not refused: {result.stdout}"
        assert len(result.stderr.splitlines()) == 1 and "Traceback" not in result.stderr
        return result.stderr.strip()


def make_admin(env, login: str, *roles: str, password: str = PASSWORD) -> AdminRun:
    from qvd.db.acl.actor import local_actor
    from qvd.db.config import Config
    from qvd.db.ops.context import Context
    from qvd.db.ops.context import Request as OpRequest
    name, tenant = login.split("@")
    local = Context(actor=local_actor(), cfg=Config(), engine=env.engine)
    local.run("admin add", OpRequest(filters={}, tenant=tenant,
                                     args={"name": login, "password": password}))
    if roles:
        local.run("admin role", OpRequest(filters={"name": name}, tenant=tenant,
                                          args={"grant": ",".join(roles)}))
    return AdminRun(env, login, password)
