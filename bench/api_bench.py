"""qvd-api benchmark (python -m bench.api_bench; part of make bench).

10,000 VMs in a private database. The figure: `GET /api/v1/vms` with a filter and a page of
100 (rows and the total), over TLS to a real qvd-api process, as an Operator L3
administrator. Floor: the same two statements the domain layer runs (the page and the count,
compiled from its query), run directly in psql (`\\timing`) in the same run. Also: requests
per second with 50 concurrent clients, and what an administrator's ACL check adds to a
request (the administrator's ACLs read through their roles, and the operation checked).
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import shutil
import ssl
import subprocess
import sys
import tempfile
import threading
import time

from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool

from qvd.db.acl.check import administrator_acls, require
from qvd.db.engine import make_engine
from qvd.db.ops.context import Request
from qvd.db.ops.vms import VIEW
from qvd.hkd.backends.process import free_port
from qvd.hkd.pidfile import end_child

from .common import (Row, concurrent_rate, ms, private_database, summary, table, timed,
                     write_certificate)

VMS = 10_000
PAGE = 100
FILTER = {"name": "lab-1*"}      # 1,111 of the 10,000 VMs
CLIENTS = 50
LOGIN, PASSWORD = "bench@acme", "bench-Pass-7"

POPULATE = f"""
INSERT INTO tenants (name) VALUES ('acme');
INSERT INTO users (tenant_id, login) SELECT id, 'alice' FROM tenants WHERE name = 'acme';
INSERT INTO osfs (tenant_id, name, memory) SELECT id, 'desktop', 256 FROM tenants
  WHERE name = 'acme';
INSERT INTO vms (name, user_id, osf_id, di_tag, ip)
  SELECT 'lab-' || n, u.id, o.id, 'default', '10.0.0.0'::inet + 100 + n
  FROM generate_series(1, {VMS}) n, users u, osfs o;
INSERT INTO vm_runtimes (vm_id) SELECT id FROM vms;
INSERT INTO vm_counters (vm_id) SELECT id FROM vms;
ANALYZE;
"""


def _sql(params: dict, script: str, *flags: str) -> str:
    env = dict(os.environ, PGPASSWORD=params.get("password") or "")
    result = subprocess.run(
        ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", params["host"],
         "-p", str(params["port"]), "-U", params["user"], "-d", params["dbname"], *flags],
        input=script, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"psql: {result.stderr.strip()}")
    return result.stdout


def _statements(request: Request) -> list[str]:
    """The page and the count that `vm list` runs, as SQL text."""
    from sqlalchemy import func, select
    page = VIEW.query(request).offset(request.offset or None).limit(request.limit)
    count = select(func.count()).select_from(VIEW._chosen(request).subquery())
    dialect = postgresql.dialect()
    # Literal binds double the LIKE escape character; the server wants it once.
    return [str(stmt.compile(dialect=dialect, compile_kwargs={"literal_binds": True}))
            .replace("ESCAPE '\\\\'", "ESCAPE '\\'") for stmt in (page, count)]


def psql_floor(params: dict, request: Request, count: int) -> list[float]:
    """Per request: the time psql reports for the two statements (server time plus the rows
    reaching psql), warm: the same connection runs them `count` times."""
    page, total = _statements(request)
    script = "\\timing on\n\\o /dev/null\n" + f"{page};\n{total};\n" * (count + 1)
    times = [float(t) / 1000 for t in re.findall(r"Time: ([0-9.]+) ms", _sql(params, script))]
    pairs = [times[i] + times[i + 1] for i in range(0, len(times), 2)]
    return pairs[1:]  # the first pair warms the connection's caches


def acl_check_cost(params: dict, admin_id: int, count: int) -> list[float]:
    """An administrator's ACLs read through its roles and one operation checked."""
    from qvd.db.acl.actor import Actor
    engine = make_engine(params, poolclass=NullPool)
    with Session(engine) as session:
        def check():
            acls = administrator_acls(session, admin_id)
            require(Actor("bench@acme", 1, "acme", admin_id, acls), "vm list")
        check()
        samples = timed(check, count)
    engine.dispose()
    return samples


class ApiServer:
    """A real qvd-api process on a loopback port, with its own node file and certificate."""

    def __init__(self, root: str, params: dict):
        self.root, self.port = root, free_port()
        write_certificate(root)
        conf = os.path.join(root, "node.conf")
        with open(conf, "w", encoding="ascii") as handle:
            handle.write(f"nodename = bench\ndatabase.host = {params['host']}\n"
                         f"database.port = {params['port']}\ndatabase.user = {params['user']}\n"
                         f"database.password = {params.get('password') or ''}\n"
                         f"database.name = {params['dbname']}\napi.address = 127.0.0.1\n"
                         f"api.port = {self.port}\npath.log = {root}\n")
        env = dict(os.environ, QVD_CONFIG=conf)
        exe = os.path.join(os.path.dirname(sys.executable), "qvd-api")
        self.log = open(os.path.join(root, "api.log"), "wb")
        self.process = subprocess.Popen(
            [exe, "--cert", f"{root}/cert.pem", "--key", f"{root}/key.pem"], env=env,
            stdout=self.log, stderr=subprocess.STDOUT)
        self.context = ssl.create_default_context(cafile=f"{root}/cert.pem")
        self.context.check_hostname = False
        self.local = threading.local()
        self._wait()

    def url(self, path: str) -> str:
        return f"https://127.0.0.1:{self.port}{path}"

    def _wait(self) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"qvd-api exited: see {self.root}/api.log")
            try:
                self.call("GET", "/api/v1/openapi.json")
                return
            except OSError:
                self.local.conn = None
                time.sleep(0.1)  # polling a port that is not open yet
        raise RuntimeError("qvd-api did not answer in 30 s")

    def call(self, method: str, path: str, body=None, token: str | None = None):
        """On this thread's kept-alive connection, as a web tool or a script reuses one."""
        conn = getattr(self.local, "conn", None)
        if conn is None:
            conn = self.local.conn = http.client.HTTPSConnection(
                "127.0.0.1", self.port, context=self.context, timeout=30)
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        conn.request(method, path, body=json.dumps(body).encode() if body is not None
                     else None, headers=headers)
        reply = conn.getresponse()
        data = reply.read()
        if reply.status >= 400:
            raise RuntimeError(f"{method} {path}: {reply.status} {data[:200]!r}")
        return json.loads(data)

    def stop(self) -> None:
        end_child(self.process, 10)
        self.log.close()


def _make_admin(params: dict) -> int:
    """An Operator L3 administrator of acme, made through the domain layer."""
    from qvd.db.acl.actor import local_actor
    from qvd.db.ops.context import Context
    engine = make_engine(params, poolclass=NullPool)
    ctx = Context(actor=local_actor(), engine=engine)
    ctx.run("admin add", Request(args={"name": LOGIN, "password": PASSWORD}))
    ctx.run("admin role", Request(filters={"name": "bench"}, tenant="acme",
                                  args={"grant": "Operator L3"}))
    ctx.run("admin list", Request(filters={"name": "bench"}, tenant="acme"))
    engine.dispose()
    return ctx.shown[1][0]["id"]


def _concurrent_rate(server: ApiServer, token: str, path: str, seconds: float) -> float:
    return concurrent_rate(lambda _i: server.call("GET", path, token=token), CLIENTS, seconds)


def run(count: int, seconds: float) -> dict:
    with private_database("bench_api") as (root, params):
        _sql(params, POPULATE)
        admin_id = _make_admin(params)
        request = Request(filters=dict(FILTER), limit=PAGE)
        result = {"floor": summary(ms(psql_floor(params, request, count))),
                  "acl": summary(ms(acl_check_cost(params, admin_id, count)))}
        workdir = tempfile.mkdtemp(prefix="qvd-bench-api-")
        server = ApiServer(workdir, params)
        try:
            token = server.call("POST", "/api/v1/login",
                                {"login": LOGIN, "password": PASSWORD})["token"]
            path = f"/api/v1/vms?name={FILTER['name']}&limit={PAGE}"
            first = server.call("GET", path, token=token)
            result["total"], result["rows"] = first["total"], len(first["rows"])
            result["api"] = summary(ms(timed(lambda: server.call("GET", path, token=token),
                                             count)))
            result["rate"] = _concurrent_rate(server, token, path, seconds)
        finally:
            server.stop()
            shutil.rmtree(workdir, ignore_errors=True)
    return result


def rows(result: dict) -> list[Row]:
    api, floor, acl = result["api"], result["floor"], result["acl"]
    what = (f"GET /api/v1/vms, {VMS:,} VMs, filter name={FILTER['name']} "
            f"({result['total']:,} match), page of {result['rows']}")
    return [
        Row("api_list_p50", f"{what}: p50", api["p50"], "ms", floor["p50"],
            "the same 2 statements in psql, p50"),
        Row("api_list_p99", f"{what}: p99", api["p99"], "ms", floor["p99"],
            "the same 2 statements in psql, p99"),
        Row("api_rate", f"the same request, {CLIENTS} concurrent clients", result["rate"],
            "req/s", None, "-"),
        Row("api_acl_check", "an Operator L3 administrator's ACLs read and an operation "
            "checked, per request", acl["p50"], "ms", 1.0, "goal"),
    ]


def distributions(result: dict) -> dict:
    return {"api": (f"GET /api/v1/vms, {VMS:,} VMs, a page of {PAGE}", "ms", {
        "qvd-api over TLS": result["api"]["samples"],
        "the same statements in psql": result["floor"]["samples"]})}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=200, help="requests timed one by one")
    parser.add_argument("--seconds", type=float, default=5, help="of concurrent requests")
    args = parser.parse_args()
    print(table(rows(run(args.count, args.seconds))))


if __name__ == "__main__":
    main()
