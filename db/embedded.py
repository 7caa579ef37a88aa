"""A private PostgreSQL cluster under $QVD_HOME/pg, used when `database.host` is not set.

Layout: pg/data (the cluster), pg/run (its Unix socket), pg/port, pg/password (0600),
pg/postgresql.log. As root the cluster runs as an unprivileged account (`postgres` when it
exists, else `nobody`), because initdb and postgres refuse to run as root.
"""
from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import socket
import subprocess
from dataclasses import dataclass

SUPERUSER = "qvd"
DATABASE = "qvd"
PORT_RANGE = range(54320, 54400)


class EmbeddedError(Exception):
    """The embedded cluster cannot be created, started or reached; the message says why."""


def server_bindir() -> str:
    """Directory of the newest installed PostgreSQL server binaries."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(p.split("/")[4]) if p.split("/")[4].isdigit() else 0)
    if found:
        return os.path.dirname(found[-1])
    initdb = shutil.which("initdb")
    if initdb:
        return os.path.dirname(initdb)
    raise EmbeddedError("PostgreSQL server binaries not found: install Debian's 'postgresql' "
                        "package (make run and make test do it for you)")


def _run_account() -> pwd.struct_passwd | None:
    """The account the server runs as, or None to run as ourselves."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise EmbeddedError("running as root but neither 'postgres' nor 'nobody' exists")


def _port_taken(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def _free_port() -> int:
    for port in PORT_RANGE:
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise EmbeddedError(f"no free port in {PORT_RANGE.start}-{PORT_RANGE.stop - 1}")


def _process_alive(pid: int) -> bool:
    """True for a live process; False when gone or a zombie (dead, not yet reaped)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


@dataclass
class Cluster:
    root: str  # $QVD_HOME/pg

    @property
    def data(self) -> str:
        return os.path.join(self.root, "data")

    @property
    def socket_dir(self) -> str:
        return os.path.join(self.root, "run")

    @property
    def logfile(self) -> str:
        return os.path.join(self.root, "postgresql.log")

    def _read(self, name: str) -> str:
        try:
            with open(os.path.join(self.root, name), encoding="ascii") as handle:
                return handle.read().strip()
        except FileNotFoundError:
            raise EmbeddedError(f"the embedded database under {self.root} does not exist yet: "
                                "run 'qvd-admin db start' (or 'make run')") from None

    @property
    def port(self) -> int:
        return int(self._read("port"))

    @property
    def password(self) -> str:
        return self._read("password")

    @property
    def l7r_password(self) -> str:
        if not os.path.exists(os.path.join(self.root, "l7r-password")):
            raise EmbeddedError("the L7R's database role has no password yet: run "
                                "'qvd-admin db upgrade'")
        return self._read("l7r-password")

    def ensure_l7r_password(self) -> str:
        """The L7R role's password (pg/l7r-password, 0600), made on first use."""
        path = os.path.join(self.root, "l7r-password")
        if not os.path.exists(path):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w", encoding="ascii") as handle:
                handle.write(secrets.token_urlsafe(24) + "\n")
        return self.l7r_password

    def exists(self) -> bool:
        return os.path.exists(os.path.join(self.data, "PG_VERSION"))

    def connection_params(self) -> dict:
        return {"host": self.socket_dir, "port": self.port, "user": SUPERUSER,
                "password": self.password, "dbname": DATABASE}

    # --- running the server binaries as the right account --------------------------------------
    def _pg(self, tool: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        account = _run_account()
        kwargs = {}
        env = dict(os.environ, LC_ALL="C.UTF-8", LANG="C.UTF-8")
        if account is not None:
            kwargs = {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}
            env["HOME"] = account.pw_dir
        result = subprocess.run([os.path.join(server_bindir(), tool), *args], env=env, cwd="/",
                                capture_output=True, text=True, **kwargs)
        if check and result.returncode != 0:
            detail = (result.stderr or result.stdout).strip().splitlines()
            raise EmbeddedError(f"{tool} failed: {detail[-1] if detail else result.returncode}"
                                f" (log: {self.logfile})")
        return result

    def _chown(self, path: str) -> None:
        account = _run_account()
        if account is not None:
            os.chown(path, account.pw_uid, account.pw_gid)

    def create(self, settings: dict[str, str] | None = None) -> None:
        """initdb with a generated superuser password; listen on a socket and loopback only."""
        if self.exists():
            return
        os.makedirs(self.socket_dir, exist_ok=True)
        os.chmod(self.root, 0o755)
        port = _free_port()
        password = secrets.token_urlsafe(24)
        pwfile = os.path.join(self.root, "password")
        with open(os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as handle:
            handle.write(password + "\n")
        self._chown(pwfile)  # initdb reads it as the server account
        for path in (self.root, self.socket_dir):
            self._chown(path)
        self._pg("initdb", "-D", self.data, "-U", SUPERUSER, "--pwfile", pwfile,
                 "--auth-local=scram-sha-256", "--auth-host=scram-sha-256", "-E", "UTF8",
                 "--locale=C.UTF-8")
        options = {"listen_addresses": "'127.0.0.1'",
                   "unix_socket_directories": f"'{self.socket_dir}'",
                   "unix_socket_permissions": "0700", "max_connections": "200",
                   "logging_collector": "off"}
        options.update(settings or {})
        with open(os.path.join(self.data, "postgresql.auto.conf"), "a", encoding="utf-8") as conf:
            conf.writelines(f"{key} = {value}\n" for key, value in options.items())
        self._set_port(port)

    def running(self) -> bool:
        pid = self.server_pid()
        return pid is not None and _process_alive(pid)

    def start(self) -> bool:
        """Start the server if it is not running; True when it was started now."""
        if not self.exists():
            raise EmbeddedError(f"no cluster under {self.root}")
        if self.running():
            return False
        # A server that was killed leaves its postmaster.pid; where nobody reaps the dead
        # process (a container whose init does not), postgres would take it for alive.
        for stale in [os.path.join(self.data, "postmaster.pid"),
                      *glob.glob(os.path.join(self.socket_dir, ".s.PGSQL.*.lock"))]:
            if os.path.exists(stale):
                os.unlink(stale)
        if not os.path.exists(self.logfile):
            open(self.logfile, "a").close()
            self._chown(self.logfile)
        moves = 2
        while True:
            try:
                self._pg("pg_ctl", "-D", self.data, "-l", self.logfile, "-w", "-t", "60",
                         "start")
                return True
            except EmbeddedError:
                # Another program took our port since it was picked (two clusters created at
                # once pick the same one): move to a free one. Clients read the port file.
                if not moves or not _port_taken(self.port):
                    raise
                moves -= 1
                self._set_port(_free_port())

    def _set_port(self, port: int) -> None:
        with open(os.path.join(self.data, "postgresql.auto.conf"), "a", encoding="utf-8") as conf:
            conf.write(f"port = {port}\n")  # the last setting of a key wins
        with open(os.path.join(self.root, "port"), "w", encoding="ascii") as handle:
            handle.write(f"{port}\n")

    def stop(self) -> bool:
        """Stop the server if it runs; True when it was stopped now."""
        if not self.running():
            return False
        self._pg("pg_ctl", "-D", self.data, "-w", "-t", "60", "-m", "fast", "stop")
        return True

    def server_pid(self) -> int | None:
        try:
            with open(os.path.join(self.data, "postmaster.pid"), encoding="ascii") as handle:
                return int(handle.readline())
        except (FileNotFoundError, ValueError):
            return None
