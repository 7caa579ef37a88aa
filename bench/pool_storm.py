"""The login storm of desktop pools (python -m bench.pool_bench --storm; issue 17).

10 simulated nodes (bench.fake_nodes: the real node code, pool keeper included; fake
backend and VMAs) on one PostgreSQL; 2 pools made with qvd-admin (spare 10,
max = their users + spare); 200 users, half entitled to each, connect at once, one thread
each, spread over the nodes, each through the L7R's own connect_to_vm (hand_out, take-over,
start_in_turn, the wait for `running`, the session row and its end) on the L7R role's
database connection under that node's connection slots. Not driven: TLS, the password check
(the identity is cached as after a login) and the desktop session (the fake VMA serves none):
"has a desktop" is "the VM handed out runs". A user answered 503 connects again after RETRY_S.
Figures: all 200 with a running VM, against the bare start throughput of the same nodes (as
many VMs of no pool, placed and commanded with `vm start`'s statements from CLIENTS
connections) and against the same 200 logins to a stopped VM of one's own (no pool); the
spares refilled after the last desktop, against the pools' first fill. Checks: no VM handed
out twice, no pool above max, at most pool.max_preparing of a pool's VMs starting (sampled),
one VM per user, no login refused for a deadlock. Everything shares this machine's cores.
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import psycopg
from sqlalchemy.pool import NullPool

from qvd.db.config import Config
from qvd.db.engine import L7R_ROLE, enable_l7r_role, make_engine
from qvd.db.runtime import vm_commands
from qvd.hkd.fake_node import fake_node_config
from qvd.l7r import endpoints
from qvd.l7r.auth import Identity
from qvd.l7r.connect import Connect
from qvd.l7r.db import L7rDb
from qvd.l7r.http import Request
from qvd.l7r.slots import Slots

from .common import Row, ms, private_database, summary
from .fake_nodes import CLUSTER_SEED, NodeProcesses, seed
from .node import wait

# --- the login storm: the L7R side ----------------------------------------------------------
NODES, USERS, POOLS, SPARE = 10, 200, 2, 10
CLIENTS = 4       # connections the bare `vm start` commands come from
RETRY_S = 1.0     # a user answered 503 connects again after this long
DEADLINE_S = 240  # a user with no desktop after this long counts as failed
SAMPLE_S = 0.02   # the peak sampler's period


class StubHttp:
    """The client's side of one L7R connection as connect_to_vm sees it: what it got."""

    def __init__(self):
        self.waited_turn = False             # told to wait for other desktops of the pool
        self.desktop_at: float | None = None  # epoch: its VM runs, the desktop would start
        self.vm: int | None = None           # the VM it got
        self.error: str | None = None        # the answer when it got none

    def interim(self, status: int, headers=()) -> None:
        if any("Waiting for other desktops" in value for _, value in headers):
            self.waited_turn = True

    def switch_protocols(self, headers=()) -> bytes:
        return b""


class StormConnect(Connect):
    """connect_to_vm's steps as the L7R takes them, but the desktop session (the fake VMA
    serves none): its VM runs when start_desktop is reached; the user leaves at once, and the
    session's end is written as after any stream."""

    def start_desktop(self, vm: dict) -> socket.socket:
        self.session.http.desktop_at, self.session.http.vm = time.time(), self.vm_id
        here, there = socket.socketpair()
        there.close()
        return here

    def pump(self, desktop, traffic, early) -> str:
        return "client closed"


@contextmanager
def storm_connects():
    """endpoints.connect_to_vm makes StormConnects meanwhile (in this process only)."""
    real, endpoints.Connect = endpoints.Connect, StormConnect
    try:
        yield
    finally:
        endpoints.Connect = real


class L7rSide:
    """What the simulated nodes' L7R connections use: each node's file (path.run for its
    connection slots, path.home for session-end journals), the L7R role's parameters."""

    def __init__(self, params: dict, l7r_params: dict, root: str):
        self.params, self.l7r_params = params, l7r_params  # a superuser's, the L7R role's
        with psycopg.connect(**params, autocommit=True) as conn:
            settings = dict(conn.execute("SELECT key, value FROM configs "
                                         "WHERE tenant_id = -1").fetchall())
        self.node_cfg = {}
        for n in range(1, NODES + 1):
            home = os.path.join(root, "nodes", f"node{n}")
            self.node_cfg[f"node{n}"] = dict(fake_node_config(
                params, home, os.path.join(root, "storage"), nodename=f"node{n}").node,
                **{"path.home": home})
        self.cfg = Config(node=self.node_cfg["node1"], db_global=settings)

    def connect(self, nodename: str, user: tuple[int, str], target: int) -> StubHttp:
        """One client connection to nodename's L7R, as serve_connection runs it:
        connect_to_vm?id=target as user (id, login)."""
        node_cfg = self.node_cfg[nodename]
        db = L7rDb(self.l7r_params, f"qvd-l7r bench {user[1]}",
                   Slots(node_cfg["path.run"], "db",
                         self.cfg.get_int("l7r.database.max_connections")),
                   self.cfg.get_float("l7r.database.wait"))
        http = StubHttp()
        session = endpoints.Session(http, db, node_cfg, nodename, "127.0.0.1")
        header = f"Basic bench-{user[1]}"
        session.identity, session._auth_header = Identity(user[0], user[1], 1, "default"), header
        request = Request("GET", "/qvd/connect_to_vm", [("id", str(target))],
                          {"connection": "Upgrade", "upgrade": "QVD/1.0",
                           "authorization": header})
        try:
            session.begin_request()
            try:
                endpoints.connect_to_vm(session, request)
            finally:
                session.flush_counts()
        except endpoints.HttpError as exc:
            http.error = f"{exc.status} {exc.message.strip()}"
        except psycopg.OperationalError as exc:  # serve_connection answers 503
            http.error = f"503 database unavailable: {str(exc).strip()}"
        finally:
            db.release()
        return http


def login_storm(side: L7rSide, logins: list[tuple[tuple[int, str], int]]
                ) -> tuple[float, list[dict]]:
    """All logins at once, one thread each, on node1..nodeN in turn, each connecting again
    after a 503 until it has a desktop: (epoch of the start, per login: the epoch it had its
    desktop (None: never), the VM it got, the errors before).)"""
    results: list[dict | None] = [None] * len(logins)
    gate = threading.Barrier(len(logins) + 1)

    def user(index: int, who: tuple[int, str], target: int) -> None:
        nodename, errors = f"node{index % NODES + 1}", []
        gate.wait()
        began = time.time()
        while True:
            http = side.connect(nodename, who, target)
            if http.desktop_at is not None:
                results[index] = {"at": http.desktop_at, "vm": http.vm, "errors": errors,
                                  "waited_turn": http.waited_turn}
                return
            errors.append(http.error or "no desktop, no error")
            if time.time() - began > DEADLINE_S:
                results[index] = {"at": None, "errors": errors}
                return
            time.sleep(RETRY_S)
    threads = [threading.Thread(target=user, args=(i, who, target), daemon=True)
               for i, (who, target) in enumerate(logins)]
    for thread in threads:
        thread.start()
    gate.wait()
    began = time.time()
    for thread in threads:
        thread.join(DEADLINE_S + 60)
    return began, [r or {"at": None, "errors": ["thread did not end"]} for r in results]


def bare_starts(params: dict, cfg: Config, vm_ids: list[int], memory: int) -> float:
    """`vm start` for each VM (placement and command, one transaction each) from CLIENTS
    connections; seconds until all are committed."""
    def client(share: list[int]) -> None:
        db = L7rDb(params, "bench vm start")
        try:
            for vm in share:
                with db.conn.transaction():
                    sent = vm_commands.place_and_start(db, cfg, vm, memory)
                if sent is not vm_commands.Start.SENT:
                    raise RuntimeError(f"bare start of vm {vm} refused: {sent.value}")
        finally:
            db.release()
    began = time.monotonic()
    with ThreadPoolExecutor(CLIENTS) as clients:
        list(clients.map(client, [vm_ids[i::CLIENTS] for i in range(CLIENTS)]))
    return time.monotonic() - began


class PeakSampler(threading.Thread):
    """Per pool, the most VMs it had and the most of them starting at once."""

    def __init__(self, params: dict):
        super().__init__(daemon=True)
        self.params, self.done = params, threading.Event()
        self.most_vms: dict[int, int] = {}
        self.most_preparing: dict[int, int] = {}

    def run(self) -> None:
        with psycopg.connect(**self.params, autocommit=True) as conn:
            while not self.done.is_set():
                for pool, vms, preparing in conn.execute(
                        "SELECT v.pool_id, count(*), count(*) FILTER (WHERE r.vm_state = "
                        "'starting' OR r.vm_cmd = 'start') FROM vms v JOIN vm_runtimes r "
                        "ON r.vm_id = v.id WHERE v.pool_id IS NOT NULL GROUP BY 1"):
                    self.most_vms[pool] = max(self.most_vms.get(pool, 0), vms)
                    self.most_preparing[pool] = max(self.most_preparing.get(pool, 0), preparing)
                time.sleep(SAMPLE_S)

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.done.set()
        self.join(10)


# --- the login storm: the run ----------------------------------------------------------------
SEED = CLUSTER_SEED + """
INSERT INTO users (tenant_id, login) SELECT 1, 'u' || n FROM generate_series(0, %(users)s - 1) n;
INSERT INTO users (tenant_id, login) VALUES (1, 'bare');
INSERT INTO vms (name, user_id, osf_id, ip)
  SELECT 'bare' || n, (SELECT id FROM users WHERE login = 'bare'), 1, '10.1.0.0'::inet + n
  FROM generate_series(1, %(users)s) n;
INSERT INTO vms (name, user_id, osf_id, ip)
  SELECT 'own-' || login, id, 1, '10.1.128.0'::inet + id FROM users WHERE login LIKE 'u%%';
INSERT INTO vm_runtimes (vm_id) SELECT id FROM vms;
INSERT INTO vm_counters (vm_id) SELECT id FROM vms;
"""
REFILLED = """
SELECT count(*) FILTER (WHERE v.user_id IS NULL AND r.vm_state = 'running'
                        AND r.vm_cmd IS NULL) AS spares,
       count(*) FILTER (WHERE r.vm_state = 'starting' OR r.vm_cmd IS NOT NULL) AS moving,
       extract(epoch FROM max(r.vm_state_ts) FILTER (WHERE v.user_id IS NULL))::float8 AS last
FROM vms v JOIN vm_runtimes r ON r.vm_id = v.id WHERE v.pool_id = %(pool)s"""
RUNNING = """
SELECT count(*) FILTER (WHERE r.vm_state = 'running'),
       extract(epoch FROM max(r.vm_state_ts))::float8
FROM vms v JOIN vm_runtimes r ON r.vm_id = v.id WHERE v.id = ANY(%(vms)s)"""


def _refilled(db, pools: list[int], spare: int) -> float | None:
    """Once every pool has `spare` running spares and nothing starting or stopping: the
    epoch of the last spare's start; else None."""
    last = 0.0
    for pool in pools:
        spares, moving, at = db.execute(REFILLED, {"pool": pool}).fetchone()
        if spares != spare or moving:
            return None
        last = max(last, at or 0.0)
    return last


def _all_running(db, vm_ids: list[int], timeout: float) -> float:
    """Waits until all of vm_ids run: the epoch the last one did."""
    found = {}

    def done():
        time.sleep(0.05)
        found["row"] = db.execute(RUNNING, {"vms": vm_ids}).fetchone()
        return found["row"][0] == len(vm_ids)
    wait(done, timeout)
    return found["row"][1]


def _counted(nodes: NodeProcesses, work):
    """work()'s value, the statements the nodes sent meanwhile and the CPU seconds this
    process (the L7R side) spent."""
    q0, cpu0 = nodes.status()["queries"], time.process_time()
    value = work()
    return value, nodes.status()["queries"] - q0, time.process_time() - cpu0


def _admin(env: dict, *args: str) -> None:
    subprocess.run([os.path.join(os.path.dirname(sys.executable), "qvd-admin"), *args],
                   env=env, check=True, capture_output=True)


def _setup(db, env: dict, users: int, spare: int) -> tuple[dict, dict]:
    """The seed rows; the pools made and given their members with qvd-admin (no spare yet:
    their first fill is timed). ({name: id}, {id: max})."""
    seed(db, SEED, {"nodes": NODES, "users": users})
    per_pool = users // POOLS
    for index in range(POOLS):
        name = f"p{index + 1}"
        _admin(env, "pool", "add", f"name={name}", "osf=bench", "min=0", "spare=0",
               f"max={per_pool + spare}")
        members = ",".join(f"u{n}" for n in range(index * per_pool, (index + 1) * per_pool))
        _admin(env, "pool", "members", "-f", f"name={name}", f"add={members}")
    db.execute("VACUUM ANALYZE")
    return (dict(db.execute("SELECT name, id FROM pools").fetchall()),
            dict(db.execute("SELECT id, max FROM pools").fetchall()))


def _checks(db, logins: list[dict], who: list[tuple], maximum: dict, sampler: PeakSampler,
            max_preparing: int) -> dict:
    """The storm's invariants, each True when it held."""
    got = [r["vm"] for r in logins]
    held = dict(db.execute("SELECT user_id, id FROM vms WHERE pool_id IS NOT NULL "
                           "AND user_id IS NOT NULL").fetchall())
    shared = db.execute("SELECT count(*) FROM (SELECT vm_id FROM sessions GROUP BY vm_id "
                        "HAVING count(DISTINCT user_id) > 1) s").fetchone()[0]
    several = db.execute("SELECT count(*) FROM (SELECT user_id FROM vms WHERE pool_id IS NOT "
                         "NULL AND user_id IS NOT NULL GROUP BY user_id HAVING count(*) > 1) s"
                         ).fetchone()[0]
    return {
        "no VM handed out twice (the connections got distinct VMs; no VM has sessions of "
        "two users)": len(set(got)) == len(got) and shared == 0,
        "every user holds exactly one VM of their pool, the one their connection got":
            several == 0 and all(held.get(user_id) == vm for (user_id, _), vm in zip(who, got)),
        "no pool ever above its max (sampled)":
            all(sampler.most_vms.get(pool, 0) <= top for pool, top in maximum.items()),
        f"never more than pool.max_preparing = {max_preparing} VMs of a pool starting "
        f"(sampled every {SAMPLE_S * 1000:g} ms)":
            all(n <= max_preparing for n in sampler.most_preparing.values()),
        "no login refused for a database deadlock":
            not any("deadlock detected" in e for r in logins for e in r["errors"]),
    }


def _reasons(errors: list[str]) -> dict[str, list]:
    """The answers users retried after: first line -> [how many, the first in full]."""
    found: dict[str, list] = {}
    for error in errors:
        found.setdefault(error.splitlines()[0][:100], [0, error])[0] += 1
    return found


def _phases(db, nodes: NodeProcesses, side: L7rSide, pools: dict, maximum: dict,
            users: int, spare: int) -> dict:
    """The first fill, the bare starts, the storm and its refill, the own-VM peer."""
    found, ids = {}, list(pools.values())

    def refilled():
        time.sleep(0.05)
        return _refilled(db, ids, spare)

    # The first fill: the pools get their sizes (as `pool edit` writes them).
    (began,) = db.execute("SELECT extract(epoch FROM clock_timestamp())::float8").fetchone()
    db.execute("UPDATE pools SET min = %s, spare = %s", (spare, spare))
    wait(refilled, 300)
    found["fill_s"] = _refilled(db, ids, spare) - began

    # The floor: bare `vm start` of as many stopped VMs of no pool.
    bare = [r[0] for r in db.execute("SELECT v.id FROM vms v JOIN users u ON u.id = v.user_id "
                                     "WHERE u.login = 'bare' ORDER BY v.id")]
    time.sleep(1)
    began = time.time()
    (found["bare_commit_s"], last), found["bare_statements"], _ = _counted(
        nodes, lambda: (bare_starts(side.params, side.cfg, bare, 1),
                        _all_running(db, bare, 300)))
    found["bare_s"] = last - began

    # The storm: every user connects to their pool at once; then the spares come back.
    who = [tuple(u) for u in db.execute("SELECT id, login FROM users WHERE login LIKE 'u%' "
                                        "ORDER BY substr(login, 2)::int")]
    targets = [(u, -pools[f"p{i // (users // POOLS) + 1}"]) for i, u in enumerate(who)]

    def storm():
        with storm_connects():
            began, logins = login_storm(side, targets)
        if missing := [r for r in logins if r["at"] is None]:
            raise RuntimeError(f"{len(missing)} users got no desktop; one saw "
                               f"{missing[0]['errors'][-3:]}")
        wait(refilled, 300)
        return began, logins, _refilled(db, ids, spare)
    time.sleep(1)
    with PeakSampler(side.params) as sampler:
        (began, logins, refilled_at), found["storm_statements"], found["storm_cpu_s"] = \
            _counted(nodes, storm)
    last = max(r["at"] for r in logins)
    found.update(storm_s=last - began, desktops=sorted(r["at"] - began for r in logins),
                 refill_s=max(0.0, refilled_at - last), refilled_s=refilled_at - began,
                 waited_turn=sum(1 for r in logins if r["waited_turn"]),
                 retry_reasons=_reasons([e for r in logins for e in r["errors"]]),
                 most_vms=sampler.most_vms, most_preparing=sampler.most_preparing,
                 checks=_checks(db, logins, who, maximum, sampler,
                                side.cfg.get_int("pool.max_preparing")))
    found["retries"] = sum(n for n, _ in found["retry_reasons"].values())

    # The peer: the same users, the same code path, each to a stopped VM of their own.
    own = dict(db.execute("SELECT user_id, id FROM vms WHERE name LIKE 'own-%'"))
    time.sleep(1)
    with storm_connects():
        (began, logins), found["own_statements"], found["own_cpu_s"] = _counted(
            nodes, lambda: login_storm(side, [(u, own[u[0]]) for u in who]))
    if missing := [r for r in logins if r["at"] is None]:
        raise RuntimeError(f"{len(missing)} logins to their own VM failed; one saw "
                           f"{missing[0]['errors'][-3:]}")
    found.update(own_s=max(r["at"] for r in logins) - began,
                 own_desktops=sorted(r["at"] - began for r in logins),
                 own_retries=sum(len(r["errors"]) for r in logins))
    return found


def run_storm(users: int = USERS, spare: int = SPARE, processes: int = 2,
              max_preparing: int | None = None) -> dict:
    with private_database(settings={"max_connections": "500"}) as (root, params), \
            psycopg.connect(**params, autocommit=True) as db:
        password = "bench-" + os.urandom(16).hex()  # a random secret: the quick verifier
        enable_l7r_role(make_engine(params, poolclass=NullPool), password)
        conf = os.path.join(root, "admin.conf")
        with open(conf, "w", encoding="utf-8") as handle:
            handle.write("".join(f"database.{key} = {params[key]}\n" for key in
                                 ("host", "port", "user", "password"))
                         + f"database.name = {params['dbname']}\n")
        env = dict(os.environ, QVD_CONFIG=conf)
        if max_preparing is not None:
            _admin(env, "config", "set", f"pool.max_preparing={max_preparing}")
        pools, maximum = _setup(db, env, users, spare)
        nodes = NodeProcesses(params, root, [f"node{n}" for n in range(1, NODES + 1)],
                              processes)
        try:
            began = time.monotonic()
            wait(lambda: nodes.status()["serving"] == NODES, 120)
            ready_s = time.monotonic() - began
            side = L7rSide(params, dict(params, user=L7R_ROLE, password=password), root)
            found = _phases(db, nodes, side, pools, maximum, users, spare)
        finally:
            nodes.stop()
    return dict(found, storm=True, users=users, pools=POOLS, spare=spare, nodes=NODES,
                max_preparing=side.cfg.get_int("pool.max_preparing"), processes=processes,
                ready_s=ready_s, max=maximum)


def storm_rows(result: dict) -> list[Row]:
    n, spares = result["users"], result["pools"] * result["spare"]
    where = f"{result['pools']} pools, {result['nodes']} simulated nodes"
    return [
        Row("pool_storm", f"pool storm: {n} logins at once ({where}) -> all have a running "
            "VM", result["storm_s"], "s", result["bare_s"],
            f"{n} bare `vm start` commands -> all running, same nodes"),
        Row("pool_storm_own_vm", f"pool storm: {n} logins at once -> all have a running VM",
            result["storm_s"], "s", result["own_s"],
            f"the same {n} logins, each to a stopped VM of their own, no pool"),
        Row("pool_storm_refill", f"pool storm: last desktop -> {spares} spares refilled",
            result["refill_s"], "s", result["fill_s"],
            f"the pools' first fill of their {spares} spares"),
    ]


def storm_details(result: dict) -> str:
    n = result["users"]
    lines = [f"- pool.max_preparing {result['max_preparing']}; pool maxima "
             f"{sorted(result['max'].values())}; most VMs a pool had "
             f"{sorted(result['most_vms'].values())}; most of a pool's VMs starting at once "
             f"{sorted(result['most_preparing'].values())}",
             f"- bare starts: {n} commands committed in {result['bare_commit_s']:.2f} s "
             f"({CLIENTS} clients), all running after {result['bare_s']:.2f} s; "
             f"{result['bare_statements'] / n:.0f} node statements per start",
             f"- storm: has a running VM p50 {summary(result['desktops'])['p50']:.2f} s, "
             f"last {result['storm_s']:.2f} s; {result['waited_turn']} logins waited their "
             f"turn (pool.max_preparing); {result['retries']} retries after a 503; spares "
             f"refilled {result['refilled_s']:.2f} s after the first login; "
             f"{result['storm_statements'] / n:.0f} node statements and "
             f"{result['storm_cpu_s'] / n * 1000:.0f} ms of L7R-side CPU per login",
             f"- own-VM peer: p50 {summary(result['own_desktops'])['p50']:.2f} s, last "
             f"{result['own_s']:.2f} s, {result['own_retries']} retries; "
             f"{result['own_statements'] / n:.0f} node statements and "
             f"{result['own_cpu_s'] / n * 1000:.0f} ms of L7R-side CPU per login",
             f"- simulated nodes up after {result['ready_s']:.1f} s ({result['processes']} "
             "processes)"]
    lines += [f"- retried {count}x after: {' / '.join(first.splitlines())}"
              for count, first in result["retry_reasons"].values()]
    lines += [f"- check {'ok' if ok else 'FAILED'}: {what}"
              for what, ok in result["checks"].items()]
    return "\n".join(lines)
