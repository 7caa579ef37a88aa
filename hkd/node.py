"""qvd-hkd's node: its lifecycle (starting -> running -> stopping -> stopped), its VMs'
state machines, fencing and rejoining. One asyncio loop; no threads."""
from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import subprocess
import sys
import time

from qvd.db.engine import connection_params
from qvd.db.notify import CONFIG_CHANNEL, host_cmd_channel, user_cmd_channel
from qvd.l7r.session_end import journal_dir

from . import adoption, cluster, commands, l7r_killer, metrics_server, session_ends
from .backends import BackendError, make_backend
from .cluster_metrics import ClusterMetrics
from .database import Database, DbUnavailable
from .host_store import HostStore
from .l7r_runner import L7rRunner
from .lease import LeaseKeeper
from .metrics import NodeCollector
from .node_life import ROW_STATE, NodeLife
from .pidfile import PidFile
from .pool_keeper import PoolKeeper
from .supervisor import supervised
from .vm_actions import VmActions
from .vm_machine import Event, VmMachine
from .vm_store import VmStore

log = logging.getLogger(__name__)


class NodeError(Exception):
    """The node cannot start; the message says why."""


def _memory_mib() -> int:
    with open("/proc/meminfo", encoding="ascii") as handle:
        for line in handle:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) // 1024
    return 0


class Node:
    def __init__(self, cfg):
        self.cfg = cfg
        self.name = cfg.get("nodename")
        if not self.name:
            raise NodeError("nodename is not set in the node file (QVD_CONFIG)")
        self.run_dir = cfg.get("path.run")
        params = connection_params(cfg)
        self.db = Database(params, f"qvd-hkd {self.name}")
        self.monitor_db = Database(params, f"qvd-hkd {self.name} monitor", kind="monitor")
        try:
            self.metrics_address = metrics_server.parse_address(cfg.get("hkd.metrics.address"))
        except metrics_server.MetricsAddressError as exc:
            raise NodeError(str(exc)) from None
        self.metrics_server = None
        self.collectors: list = []
        # the main connection: the monitor one runs the lost-node transaction, which must not
        # take these statements in
        self.cluster_metrics = ClusterMetrics(self.db)
        self.backend = make_backend(cfg)
        self.machines: dict[int, asyncio.Task] = {}
        self.claiming: dict[int, asyncio.Event] = {}  # starts between check and spawn
        self.inboxes: dict[int, VmMachine] = {}
        self.life = NodeLife(self.name)
        self.fence_note: str | None = None  # why it fenced, for the host row once back
        self.stop_requested = asyncio.Event()
        self._tasks: set[asyncio.Task] = set()
        self._watchdog: subprocess.Popen | None = None
        self.watchdog_pid = PidFile(os.path.join(self.run_dir, f"watchdog-{self.name}.pid"))
        self._lock = None

    # --- start-up -------------------------------------------------------------------------
    def take_lock(self) -> None:
        os.makedirs(self.run_dir, exist_ok=True)
        path = os.path.join(self.run_dir, f"hkd-{self.name}.lock")
        self._lock = open(path, "w", encoding="ascii")
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise NodeError(f"another qvd-hkd runs node '{self.name}' (lock {path})") from None
        self._lock.write(f"{os.getpid()}\n")
        self._lock.flush()

    async def check_schema(self) -> None:
        from qvd.db.migrate import head_revision  # alembic is slow to import: only here
        row = await self.db.fetchone("SELECT version_num FROM alembic_version")
        found, wanted = (row["version_num"] if row else None), head_revision()
        if found != wanted:
            raise NodeError(f"the database schema is at revision {found}, this qvd-hkd needs "
                            f"{wanted}: run 'qvd-admin db upgrade'")

    async def load_global_config(self) -> set[str]:
        """The database's global layer over the node file; the keys it changed. Every part
        of the node holds this same Config object, so they all see the change."""
        rows = await self.db.fetch("SELECT key, value FROM configs WHERE tenant_id = -1")
        before, self.cfg.db_global = self.cfg.db_global, {row["key"]: row["value"] for row in rows}
        return {key for key in before.keys() | self.cfg.db_global.keys()
                if before.get(key) != self.cfg.db_global.get(key)}

    def check_timeouts(self) -> None:
        """The fencing argument (README) needs a node to have killed its VMs before anyone
        may declare it lost: node_timeout beyond fence_timeout plus a renewal interval."""
        fence, lost, interval = (self.cfg.get_float("hkd.lease.fence_timeout"),
                                 self.cfg.get_float("hkd.cluster.node_timeout"),
                                 self.cfg.get_float("hkd.lease.interval"))
        if lost <= fence + interval:
            raise NodeError(f"hkd.cluster.node_timeout ({lost:g}s) must exceed "
                            f"hkd.lease.fence_timeout ({fence:g}s) plus hkd.lease.interval "
                            f"({interval:g}s): a lost node's VMs could run twice")

    async def connect(self) -> None:
        await self.check_schema()
        await self.load_global_config()
        self.check_timeouts()
        host_id = await HostStore.find(self.db, self.name)
        if host_id is None:
            raise NodeError(f"no host named '{self.name}': add it with "
                            f"'qvd-admin host add name={self.name} address=...'")
        self.host_id = host_id
        self.hosts = HostStore(self.db, host_id)
        await self.join_vm_network()
        self.store = VmStore(self.db, host_id, self.cfg.get("path.storage.root"))
        self.actions = VmActions(self.cfg, self.store, self.backend,
                                 asyncio.Semaphore(self.cfg.get_int("internal.hkd.max_heavy")))
        self.lease = LeaseKeeper(self, os.path.join(self.run_dir, f"hkd-{self.name}.heartbeat"))
        self.l7r = L7rRunner(self)
        self.pools = PoolKeeper(self)

    async def join_vm_network(self) -> None:
        """The node's own address on the VM network (its host's vm_address, else
        vm.network.gateway, else the network's first address), refused when another node or
        a VM holds it; with vm.network.uplink the bridge is made now. A refusal is the host
        row's last_error as well as qvd-hkd's exit message."""
        from .backends import bridge
        self.cfg.vm_address = await self.hosts.vm_address()
        if self.cfg.get("vm.hypervisor") not in ("lxc", "kvm"):
            return  # the process backend puts nothing on the VM network
        address = bridge.node_address(self.cfg)
        holders = await self.hosts.address_holders(address)
        why = None
        if holders:
            why = (f"the node's address on the VM network, {address}, is also the address "
                   f"of {', '.join(holders)}: give each node its own with 'qvd-admin host "
                   f"edit -f name={self.name} vm_address=...'")
        else:
            try:
                await asyncio.to_thread(bridge.setup_node, self.cfg)
            except BackendError as exc:
                why = f"the VM network's uplink: {exc}"
        if why:
            log.error("node %s (host %d) not started: %s", self.name, self.host_id, why)
            await self.hosts.refused(f"not started: {why}")
            raise NodeError(why)

    def ensure_watchdog(self) -> None:
        """The watchdog outlives the HKD on purpose; a new HKD reuses a live one."""
        if self._watchdog is not None:
            self._watchdog.poll()  # reap it if it died
        if self.watchdog_pid.running() is not None:
            return
        log_path = os.path.join(self.cfg.get("path.log"), f"watchdog-{self.name}.log")
        os.makedirs(os.path.dirname(log_path), exist_ok=True)
        with open(log_path, "ab") as logfile:
            self._watchdog = subprocess.Popen(
                [sys.executable, "-m", "qvd.hkd.watchdog", "--heartbeat", self.lease.heartbeat],
                stdin=subprocess.DEVNULL, stdout=logfile, stderr=logfile, start_new_session=True)
        self.watchdog_pid.record(self._watchdog.pid)

    def stop_watchdog(self) -> None:
        self.watchdog_pid.stop()
        if self._watchdog is not None:
            self._watchdog.wait(5)

    async def begin(self, gone_reason: str) -> None:
        """(Re)join: a new lease, adopt what runs here, then accept work."""
        await self.hosts.begin_lease(os.getpid(), _memory_mib(), float(os.cpu_count() or 1))
        self.lease.touch()
        if self.fence_note:
            await self.hosts.note_error(self.fence_note)
            self.fence_note = None
        async with self.lease.renewed_meanwhile():
            await adoption.adopt(self, gone_reason)
        await self.hosts.set_state(ROW_STATE["running"])
        self.life.fire("joined")
        self.update_title()
        log.info("node %s running (host %d, epoch %d)", self.name, self.host_id, self.hosts.epoch)

    # --- VM machines ----------------------------------------------------------------------
    def spawn(self, vm_id: int, state: str, first_action: str | None = None) -> VmMachine:
        machine = VmMachine(vm_id, state, self.actions, first_action)
        task = asyncio.create_task(machine.run(), name=f"vm{vm_id}")
        self.machines[vm_id], self.inboxes[vm_id] = task, machine
        task.add_done_callback(lambda _t, v=vm_id: self._machine_done(v, task))
        self.update_title()
        return machine

    def _machine_done(self, vm_id: int, task: asyncio.Task) -> None:
        if self.machines.get(vm_id) is task:
            del self.machines[vm_id]
            self.inboxes.pop(vm_id, None)
        if task.cancelled():
            return
        if task.exception() is not None:
            log.error("vm %d: handler crashed: %r", vm_id, task.exception())
        self.update_title()
        # A command that came while the machine was finishing was put off: take it now.
        self._background(self._recheck(vm_id))

    async def _recheck(self, vm_id: int) -> None:
        try:
            cmd = await self.store.pending_command(vm_id)
        except DbUnavailable:
            return  # the poll takes it
        if cmd:
            await self.handle_command(vm_id, cmd)

    async def handle_command(self, vm_id: int, cmd: str) -> None:
        try:
            if cmd == "start":
                if self.life.fenced or vm_id in self.machines or vm_id in self.claiming:
                    return  # taken again by the poll once possible
                # Reserved before the first await: a stop arriving while the start is being
                # claimed waits for the machine instead of making a second one.
                self.claiming[vm_id] = asyncio.Event()
                try:
                    if not self.life.serving:
                        await self.store.refuse_start(vm_id,
                                                      f"node {self.name} is {self.life.state}")
                    elif await self.store.claim_start(vm_id):
                        self.spawn(vm_id, "starting")
                        await self.store.count(vm_id, "run_attempts")
                    else:
                        await self.store.refuse_start(vm_id, "the VM is blocked or not stopped")
                finally:
                    self.claiming.pop(vm_id).set()
            elif cmd == "stop":
                if vm_id in self.claiming:
                    await self.claiming[vm_id].wait()
                state = await self.store.claim_stop(vm_id)
                if state is None:
                    return
                machine = self.inboxes.get(vm_id)
                if machine is None and state in ("starting", "running"):
                    machine = self.spawn(vm_id, state, "monitor" if state == "running"
                                         else "await_vma")
                if machine is not None:
                    machine.send(Event("stop"))
        except DbUnavailable as exc:
            log.warning("vm %d: command %s postponed: %s", vm_id, cmd, exc)

    def on_notification(self, channel: str, payload: str) -> None:
        if channel == CONFIG_CHANNEL:
            if payload.startswith("-1:"):
                self._background(self.reload_config(payload[3:]))
            return
        if channel == host_cmd_channel(self.host_id):
            if payload == "stop":
                self.request_stop()
            return
        if channel == user_cmd_channel(self.host_id):
            vm_id, _, _ = payload.partition(":")
            self._background(l7r_killer.abort_connections(self.db, self.host_id, int(vm_id)))
            return
        vm_id, _, cmd = payload.partition(":")
        self._background(self.handle_command(int(vm_id), cmd))

    def _background(self, coro) -> None:
        """A short task; kept referenced until done (the loop only holds weak references)."""
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def reload_config(self, announced: str | None = None) -> None:
        """On qvd_config_changed (`announced`: its key), and each time the listener starts
        listening (None): a change made while it was not has no notification of its own."""
        try:
            keys = await self.load_global_config() | ({announced} if announced else set())
        except DbUnavailable as exc:
            log.warning("configuration reload postponed: %s", exc)
            return
        if keys:
            log.info("configuration reloaded (%s changed)", ", ".join(sorted(keys)))
        if any(self.l7r.affected_by(key) for key in keys):
            await self.l7r.restart()

    async def poll_commands(self) -> None:
        if await self.hosts.command() == "stop":
            self.request_stop()
        await l7r_killer.abort_connections(self.db, self.host_id)
        await session_ends.reconcile(self.db, journal_dir(self.cfg))
        for vm_id, cmd in await self.store.pending_commands():
            await self.handle_command(vm_id, cmd)

    # --- fencing ----------------------------------------------------------------------------
    async def fence(self, reason: str) -> None:
        """Stop every VM here now, accept nothing until the lease is renewed again."""
        log.error("fencing node %s: %s", self.name, reason)
        self.life.fire("fence", reason)
        self.fence_note = f"fenced itself at {time.strftime('%H:%M:%S')}: {reason}"
        self.l7r.stop()
        for task in list(self.machines.values()):
            task.cancel()
        await asyncio.gather(*self.machines.values(), return_exceptions=True)
        for vm_id in self.backend.kill_all():
            log.warning("vm %d: killed by fencing", vm_id)
        if self.life.state == "fencing":  # not when a stop came meanwhile
            self.life.fire("fenced", reason)
        self.update_title()

    async def rejoin(self, reason: str) -> None:
        self.life.fire("rejoin", reason)
        try:
            await self.begin(f"{reason}; its VMs were killed")
        except DbUnavailable as exc:
            self.life.fire("rejoin_failed", str(exc))
            log.warning("rejoin postponed: %s", exc)

    # --- periodic -------------------------------------------------------------------------
    async def sync_liveness(self) -> None:
        """Every few seconds, one statement: VMA last-seen times out, expirations in."""
        while True:
            await asyncio.sleep(min(10.0, self.cfg.get_float("hkd.poll.interval")))
            if self.life.fenced:
                continue
            try:
                seen = {vm: ts for vm, ts in self.actions.last_ok.items() if vm in self.machines}
                self.actions.expirations = await self.store.sync_liveness(seen)
            except DbUnavailable:
                pass

    def update_title(self) -> None:
        state = self.life.state
        try:
            from setproctitle import setproctitle
            setproctitle(f"qvd-hkd {self.name}: {state}, {len(self.machines)} VMs")
        except ImportError:
            pass

    def request_stop(self) -> None:
        self.stop_requested.set()

    # --- the whole life -----------------------------------------------------------------------
    async def run(self) -> None:
        self.take_lock()
        await self.connect()
        await self.begin("the VM was not running when the node daemon started")
        self.ensure_watchdog()
        await self.l7r.ensure()
        loops = [("lease", self.lease.run), ("cluster monitor", lambda: cluster.monitor(self)),
                 ("command listener", lambda: commands.listen(self)),
                 ("liveness sync", self.sync_liveness), ("helpers", self._watch_helpers),
                 ("pool keeper", self.pools.run)]
        if await self.serve_metrics():
            loops.append(("cluster metrics", self.cluster_metrics.run))
        background = [asyncio.create_task(supervised(self, name, loop), name=name)
                      for name, loop in loops]
        await self.stop_requested.wait()
        await self.shutdown(background)

    async def serve_metrics(self) -> bool:
        """Serve /metrics on hkd.metrics.address; a failure to listen is no reason to stop
        the node's VMs, but it goes to the host row for `qvd-admin host list`."""
        if self.metrics_address is None:
            return False
        from prometheus_client import REGISTRY
        host, port = self.metrics_address
        try:
            self.metrics_server = await metrics_server.serve(host, port)
        except OSError as exc:
            why = f"metrics not served on {host}:{port}: {exc.strerror or exc}"
            log.error("node %s: %s (hkd.metrics.address)", self.name, why)
            try:
                await self.hosts.note_error(f"{why} (hkd.metrics.address)")
            except DbUnavailable:
                pass
            return False
        # Registered for this node's life only: a process may run several nodes in turn.
        self.collectors = [NodeCollector(self), self.cluster_metrics]
        for collector in self.collectors:
            REGISTRY.register(collector)
        log.info("node %s: metrics on http://%s:%d/metrics", self.name, host, port)
        return True

    async def _watch_helpers(self) -> None:
        """The watchdog and the L7R acceptor are restarted when they die."""
        while True:
            await asyncio.sleep(1)
            self.ensure_watchdog()
            if self.life.serving:
                await self.l7r.ensure()

    async def shutdown(self, background: list[asyncio.Task]) -> None:
        log.info("node %s stopping: stopping %d VM(s)", self.name, len(self.machines))
        self.life.fire("stop")
        self.l7r.stop()
        try:
            await self.hosts.set_state(ROW_STATE["stopping"])
        except DbUnavailable:
            pass
        for machine in list(self.inboxes.values()):
            machine.send(Event("stop"))
        cfg = self.cfg
        limit = (cfg.get_float("internal.hkd.timeout.vm.state.stopping_shutdown")
                 + cfg.get_float("internal.hkd.timeout.vm.state.stopping_stop") + 10)
        if self.machines:
            await asyncio.wait(list(self.machines.values()), timeout=limit)
        try:
            if not await self.backend.list():  # all stopped in time: the node's setup goes too
                await self.backend.release_node()
        except Exception:  # noqa: BLE001 - the stop goes on; the next start redoes the setup
            log.exception("node %s: releasing the VM network failed", self.name)
        for task in background:
            task.cancel()
        _, stuck = await asyncio.wait(background, timeout=10)
        for task in stuck:  # a stop never waits forever on a loop that ignores its cancel
            log.error("node %s: the %s loop did not stop", self.name, task.get_name())
        try:
            await self.hosts.stopped()
        except DbUnavailable:
            pass
        self.stop_watchdog()
        if self.metrics_server is not None:
            from prometheus_client import REGISTRY
            self.metrics_server.close()
            for collector in self.collectors:
                REGISTRY.unregister(collector)
        await self.db.close()
        await self.monitor_db.close()
        await self.pools.db.close()
        self._lock.close()  # releases the node's lock
        self.life.fire("stopped")
        log.info("node %s stopped", self.name)
