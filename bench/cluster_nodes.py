"""Real qvd-hkd nodes on one database for the failover benchmarks: the node processes, the
seed (one user, one OSF, VMs), the commands as qvd-admin writes them, and what to read back."""
from __future__ import annotations

import os
import subprocess
import sys

from qvd.db.config import Config
from qvd.db.passwords import hash_password
from qvd.db.placement import CANDIDATES, placement_params
from qvd.hkd.backends.process import ProcessBackend
from qvd.hkd.pidfile import PidFile, end_child

BIN = os.path.dirname(sys.executable)
PASSWORD = "bench"  # user bench's, for the desktops connected through the L7R

SEED = """
INSERT INTO osfs (tenant_id, name, memory) VALUES (1, 'bench', 1);
INSERT INTO dis (osf_id, path, version) VALUES (1, 'bench.tar', 'v1');
INSERT INTO di_tags (di_id, osf_id, tag) VALUES (1, 1, 'default');
INSERT INTO hosts (name, address) VALUES ('node1', '127.0.0.1'), ('node2', '127.0.0.2');
INSERT INTO host_runtimes (host_id) VALUES (1), (2);
"""

# What qvd-admin vm start writes once placement chose the node.
START = """
UPDATE vm_runtimes SET host_id = %(host)s, vm_cmd = 'start', last_error = NULL,
       last_error_at = NULL
WHERE vm_id = %(vm)s AND vm_state = 'stopped' AND vm_cmd IS NULL AND NOT blocked
RETURNING vm_id"""


def seed(db, root: str, vms: int) -> None:
    """User bench, OSF bench with its (empty) DI in the image store, VMs vm1..vmN."""
    db.execute("INSERT INTO users (tenant_id, login, password) VALUES (1, 'bench', %s)",
               (hash_password(PASSWORD),))
    db.execute(SEED)
    db.execute("INSERT INTO vms (name, user_id, osf_id, ip) SELECT 'vm' || n, 1, 1, "
               "'10.1.0.0'::inet + n FROM generate_series(1, %s) n", (vms,))
    db.execute("INSERT INTO vm_runtimes (vm_id) SELECT id FROM vms")
    db.execute("INSERT INTO vm_counters (vm_id) SELECT id FROM vms")
    os.makedirs(os.path.join(root, "storage", "images"))
    open(os.path.join(root, "storage", "images", "bench.tar"), "wb").close()


def database_conf(params: dict) -> dict:
    """The node-file keys of one server's libpq params."""
    return {"database.host": params["host"], "database.port": params["port"],
            "database.user": params["user"], "database.password": params["password"],
            "database.name": params["dbname"]}


class Hkd:
    """One qvd-hkd process (process backend) and what it leaves behind."""

    def __init__(self, root: str, database: dict, name: str, conf: dict):
        self.name = name
        self.home = os.path.join(root, name)
        self.run_dir, self.storage = os.path.join(self.home, "run"), os.path.join(root, "storage")
        self.conf = os.path.join(self.home, "node.conf")
        os.makedirs(self.home)
        lines = {"nodename": name, "path.home": self.home, "path.run": self.run_dir,
                 "path.log": f"{self.home}/log", "path.storage.root": self.storage,
                 "vm.hypervisor": "process", **database, **conf}
        self.settings = lines
        with open(self.conf, "w", encoding="utf-8") as handle:
            handle.writelines(f"{key} = {value}\n" for key, value in lines.items())
        self.env = dict({k: v for k, v in os.environ.items() if not k.startswith("QVD_")},
                        QVD_CONFIG=self.conf)
        self.proc: subprocess.Popen | None = None

    def admin(self, *args: str) -> None:
        """qvd-admin with this node's file."""
        subprocess.run([os.path.join(BIN, "qvd-admin"), *args], env=self.env, check=True,
                       capture_output=True)

    def start(self) -> Hkd:
        with open(os.path.join(self.home, "hkd.log"), "ab") as log:
            self.proc = subprocess.Popen([os.path.join(BIN, "qvd-hkd")], env=self.env,
                                         stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        return self

    def log(self) -> str:
        with open(os.path.join(self.home, "hkd.log"), encoding="utf-8", errors="replace") as f:
            return f.read()

    def cleanup(self) -> None:
        """Stop everything this node started, by PID: qvd-hkd, its helpers, its VMs."""
        if self.proc is not None:
            end_child(self.proc, 60)
        for helper in ("watchdog", "l7r"):
            PidFile(os.path.join(self.run_dir, f"{helper}-{self.name}.pid")).stop(wait=2)
        ProcessBackend(self.storage, self.run_dir).kill_all()


def states(db) -> dict[int, tuple]:
    """vm id -> (vm_state, host_id, vm_pid)."""
    return {vm: (state, host, pid) for vm, state, host, pid in db.execute(
        "SELECT vm_id, vm_state, host_id, vm_pid FROM vm_runtimes ORDER BY vm_id")}


def host_state(db, host: int) -> str:
    return db.execute("SELECT state FROM host_runtimes WHERE host_id = %s", (host,)).fetchone()[0]


def place_and_start(db, cfg: Config, vm: int) -> int | None:
    """Placement, then the start command, in one transaction (qvd-admin vm start's way)."""
    with db.transaction():
        host = db.execute(CANDIDATES, placement_params(cfg, 1)).fetchone()
        if host is None or not db.execute(START, {"host": host[0], "vm": vm}).fetchone():
            return None
        return host[0]


def start_on(db, vm: int, host: int) -> None:
    """The start command for `vm` on the node chosen here (placement left out)."""
    if db.execute(START, {"host": host, "vm": vm}).fetchone() is None:
        raise RuntimeError(f"vm {vm} could not be given a start command")
