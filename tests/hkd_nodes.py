"""Real qvd-hkd processes for tests: several nodes on one machine, one database."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

from qvd.hkd.backends.procfs import alive
from qvd.hkd.backends.process import ProcessBackend, free_port
from qvd.hkd.pidfile import PidFile, end_child

QVD_HKD = os.path.join(os.path.dirname(sys.executable), "qvd-hkd")

FAST = """\
vm.hypervisor = process
hkd.lease.interval = 0.5
hkd.lease.fence_timeout = 3
hkd.cluster.node_timeout = 5
hkd.poll.interval = 600
hkd.vm.max_failed_starts = 2
internal.hkd.vma.ping.interval = 0.5
internal.hkd.vma.ping.interval_after_failure = 0.25
internal.hkd.vma.failures.running = 3
internal.hkd.vma.dead_after.running = 1
internal.hkd.timeout.vm.state.starting = 20
internal.hkd.timeout.vm.state.stopping_shutdown = 3
internal.hkd.timeout.vm.state.stopping_stop = 3
# off: many nodes on one machine; tests/test_metrics.py gives its node a free port
hkd.metrics.address =
"""


def wait_for(check, timeout: float = 15.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


class HkdNode:
    def __init__(self, env, name: str, extra_conf: str = ""):
        self.env, self.name = env, name
        self.home = os.path.join(env.home, "nodes", name)
        self.run_dir = os.path.join(self.home, "run")
        self.conf = os.path.join(self.home, "node.conf")
        os.makedirs(self.home, exist_ok=True)
        with open(self.conf, "w", encoding="utf-8") as handle:
            handle.write(f"nodename = {name}\npath.home = {self.home}\npath.run = {self.run_dir}\n"
                         f"path.log = {self.home}/log\npath.storage.root = {env.storage}\n"
                         f"{env.database_conf()}{FAST}{extra_conf}")
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        env = dict(os.environ, QVD_CONFIG=self.conf)
        env.pop("QVD_HOME", None)
        with open(os.path.join(self.home, "hkd.log"), "ab") as log:
            self.proc = subprocess.Popen([QVD_HKD], env=env, stdout=log, stderr=log,
                                         stdin=subprocess.DEVNULL)
        wait_for(lambda: self.state() == ("running", self.proc.pid) or self.proc.poll() is not None,
                 20, f"{self.name} to run")
        assert self.proc.poll() is None, self.log()

    def state(self):
        rows = self.env.sql("SELECT r.state, r.pid FROM host_runtimes r JOIN hosts h "
                            "ON h.id = r.host_id WHERE h.name = :n", n=self.name)
        return tuple(rows[0]) if rows else None

    def lease(self):
        """The node's ok_ts: when it last renewed its lease (the database's clock)."""
        rows = self.env.sql("SELECT r.ok_ts FROM host_runtimes r JOIN hosts h "
                            "ON h.id = r.host_id WHERE h.name = :n", n=self.name)
        return rows[0][0] if rows else None

    def await_renewals(self, count: int = 1, timeout: float = 15) -> None:
        """Wait until the node has renewed its lease `count` times from now: its loops have
        run since (what a test waits for before it checks that nothing else happened)."""
        for _ in range(count):
            before = self.lease()
            wait_for(lambda: (now := self.lease()) is not None and (before is None or now > before),
                     timeout, f"{self.name} to renew its lease")

    def signal(self, sig) -> None:
        os.kill(self.proc.pid, sig)

    def stop(self, timeout: float = 30) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def log(self) -> str:
        with open(os.path.join(self.home, "hkd.log"), encoding="utf-8", errors="replace") as f:
            return f.read()[-3000:]

    def cleanup(self) -> None:
        """Stop everything this node started, by PID: HKD, watchdog, VMs. The ends of its
        logs are printed: pytest shows them with a failed test."""
        if self.proc is not None:
            print(f"--- {self.name}: qvd-hkd log ---\n{self.log()}")
        l7r_log = os.path.join(self.home, "log", f"l7r-{self.name}.log")
        if os.path.exists(l7r_log):
            with open(l7r_log, encoding="utf-8", errors="replace") as handle:
                print(f"--- {self.name}: qvd-l7r log ---\n{handle.read()[-3000:]}")
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)  # a frozen node must hear the SIGTERM
            end_child(self.proc, 20)
        for helper in ("watchdog", "l7r"):
            PidFile(os.path.join(self.run_dir, f"{helper}-{self.name}.pid")).stop(wait=2)
        ProcessBackend(self.env.storage, self.run_dir).kill_all()


def vma_processes(env, vm_id: int) -> list[int]:
    """Live processes that are the VMA of this VM under this test's storage (on any of its
    nodes), by the HOME the process backend gives each agent: <storage>/homes/<vm>. Another
    suite's agents on the same machine have another storage, so they are never counted. The
    desktop's processes inherit the environment; only the agent runs qvd.vma.main."""
    home = f"HOME={os.path.join(env.storage, 'homes', str(vm_id))}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as handle:
                environ = handle.read().split(b"\0")
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                is_agent = b"qvd.vma.main" in handle.read()
        except OSError:
            continue
        if is_agent and home in environ and alive(int(entry)):
            found.append(int(entry))
    return found


class PeakWatch:
    """Takes a reading in the background every `interval` seconds (sample() keeps the most
    it saw) from `with` to its end."""
    interval = 0.05

    def __init__(self):
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def sample(self) -> None:
        raise NotImplementedError

    def _run(self):
        while not self._stop.is_set():
            self.sample()
            time.sleep(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


class DuplicateWatch(PeakWatch):
    """The most VMA processes of a VM alive at once."""

    def __init__(self, env, vm_id: int):
        super().__init__()
        self.env, self.vm_id, self.most = env, vm_id, 0

    def sample(self) -> None:
        self.most = max(self.most, len(vma_processes(self.env, self.vm_id)))


def l7r_node(env, directory, name: str = "node1", extra_conf: str = "") -> HkdNode:
    """A started node whose L7R accepts TLS on a free loopback port, with a test certificate
    stored: node.port, node.cert and node.fingerprint (what qvd-client --fingerprint pins)."""
    import hashlib
    import ssl

    from qvd.l7r.client import accepting
    from tests_tls import write_pair
    cert, key, _ = write_pair(directory)
    env.ok("config", "ssl", "--cert", cert, "--key", key)
    port = free_port()
    node = HkdNode(env, name, f"l7r.address = 127.0.0.1\nl7r.port = {port}\n{extra_conf}")
    node.port, node.cert = port, cert
    with open(cert, encoding="ascii") as handle:
        der = ssl.PEM_cert_to_DER_cert(handle.read())
    node.fingerprint = "sha256:" + hashlib.sha256(der).hexdigest()
    node.start()
    wait_for(lambda: accepting("127.0.0.1", port), 15, "the L7R to accept")
    return node
