"""qvd-hkd's metrics, scraped by a real Prometheus (Debian's `prometheus`) on loopback: the VM
start histogram counts the starts made with the CLI, the VM gauges agree with `vm list`, the
L7R's series count the logins, desktop sessions, bytes and takeovers of real connections.
Under CI=true a missing prometheus binary fails the test (conftest turns the skip into one)."""
import collections
import json
import os
import re
import shutil
import signal
import subprocess
import urllib.parse
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from hkd_nodes import QVD_HKD, HkdNode, l7r_node, vma_processes, wait_for
from qvd.hkd.backends.process import free_port
from qvd.hkd.pidfile import end_child
from qvd.l7r.client import QvdConnection, tls_context
from qvd.l7r.session_end import SESSION_BUCKETS

PROMETHEUS = shutil.which("prometheus")
DASHBOARD = os.path.join(os.path.dirname(__file__), "..", "etc", "grafana-dashboard.json")
# Every label the node's series may carry: small fixed sets, never a user or a VM id.
ALLOWED_LABELS = {"backend", "state", "reason", "connection", "tenant", "le", "quantile",
                  "plugin", "result", "direction"}


def metrics_node(demo, name: str = "node1") -> HkdNode:
    port = free_port()
    node = HkdNode(demo, name, f"hkd.metrics.address = 127.0.0.1:{port}\n")
    node.metrics_port = port
    node.start()
    return node


def scrape(port: int) -> dict:
    """{(sample name, frozenset(labels)): value} from the node's /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        text = answer.read().decode()
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


class Prometheus:
    """A real Prometheus server on a free loopback port, scraping the given target."""

    def __init__(self, directory: str, target: str, job: str = "qvd-hkd", https=False):
        """https: over TLS (qvd-api), unverified: the tests' certificate names no
        subjectAltName, which Prometheus (Go) requires."""
        self.port = free_port()
        config = os.path.join(directory, "prometheus.yml")
        tls = ("    scheme: https\n    tls_config:\n      insecure_skip_verify: true\n"
               if https else "")
        with open(config, "w", encoding="utf-8") as handle:
            handle.write("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
                         f"scrape_configs:\n  - job_name: {job}\n{tls}"
                         f"    static_configs:\n      - targets: ['{target}']\n")
        self.log = open(os.path.join(directory, "prometheus.log"), "wb")
        self.proc = subprocess.Popen(
            [PROMETHEUS, f"--config.file={config}",
             f"--storage.tsdb.path={os.path.join(directory, 'tsdb')}",
             f"--web.listen-address=127.0.0.1:{self.port}"],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log)
        wait_for(self._ready, 30, "prometheus to be ready")

    def _ready(self) -> bool:
        assert self.proc.poll() is None, "prometheus exited; see prometheus.log"
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/-/ready", timeout=2):
                return True
        except OSError:
            return False

    def query(self, promql: str) -> dict:
        """{frozenset(labels without __name__, job, instance): value} of an instant query."""
        url = (f"http://127.0.0.1:{self.port}/api/v1/query?"
               + urllib.parse.urlencode({"query": promql}))
        with urllib.request.urlopen(url, timeout=5) as answer:
            body = json.load(answer)
        assert body["status"] == "success", body
        return {frozenset((k, v) for k, v in r["metric"].items()
                          if k not in ("__name__", "job", "instance")): float(r["value"][1])
                for r in body["data"]["result"]}

    def names(self) -> set[str]:
        url = f"http://127.0.0.1:{self.port}/api/v1/label/__name__/values"
        with urllib.request.urlopen(url, timeout=5) as answer:
            return set(json.load(answer)["data"])

    def stop(self) -> None:
        end_child(self.proc, 10)
        self.log.close()


@pytest.fixture
def prometheus_for(tmp_path):
    if PROMETHEUS is None:
        pytest.skip("prometheus is not installed (Debian package prometheus; "
                    "scripts/install-deps.sh installs it)")
    started = []

    def start(target: str, **how) -> Prometheus:
        started.append(Prometheus(str(tmp_path), target, **how))
        return started[-1]
    yield start
    for server in started:
        server.stop()


@pytest.fixture
def node(demo):
    made = metrics_node(demo)
    yield made
    made.cleanup()


def vm_states(demo) -> collections.Counter:
    return collections.Counter(row["state"] for row in json.loads(demo.ok("vm", "list", "--json")))


def test_prometheus_sees_the_starts_and_the_states(demo, node, prometheus_for):
    demo.ok("vm", "add", "-t", "acme", "name=desk2", "user=alice", "osf=desktop")
    demo.ok("vm", "add", "-t", "acme", "name=desk3", "user=alice", "osf=desktop")
    prometheus = prometheus_for(f"127.0.0.1:{node.metrics_port}")
    for name in ("desk", "desk2"):
        demo.ok("vm", "start", "-f", f"name={name}")
    wait_for(lambda: vm_states(demo)["running"] == 2, 20, "two VMs running")

    def starts_counted():
        return prometheus.query('sum(qvd_vm_start_seconds_count{backend="process"})') \
            == {frozenset(): 2.0}
    wait_for(starts_counted, 30, "prometheus to count two starts")

    def gauges_match():
        listed = vm_states(demo)
        node_vms = {dict(k)["state"]: v for k, v in prometheus.query("qvd_node_vms").items()}
        cluster = {dict(k)["state"]: v for k, v in
                   prometheus.query("sum by (state) (qvd_cluster_vms)").items()}
        return (node_vms.get("running") == listed["running"]
                and cluster == {state: float(n) for state, n in listed.items()})
    wait_for(gauges_match, 30, "the VM gauges to match vm list")
    assert prometheus.query("qvd_cluster_nodes") == {frozenset({("state", "running")}): 1.0}

    demo.ok("vm", "stop", "-f", "name=desk2")
    wait_for(lambda: vm_states(demo)["running"] == 1, 20, "one VM running")
    wait_for(lambda: prometheus.query("sum(qvd_vm_stop_seconds_count)") == {frozenset(): 1.0},
             30, "prometheus to count one stop")
    wait_for(gauges_match, 30, "the VM gauges to match vm list after the stop")

    # The dashboard (etc/) asks only what Prometheus accepts, of series the node exports
    # (qvd-api's panels: tests/test_api_metrics.py).
    check_dashboard(prometheus, lambda expr: "qvd_api_" not in expr)


def check_dashboard(prometheus: Prometheus, chosen) -> None:
    """Each chosen panel query of etc/grafana-dashboard.json parses and names only series
    the scraped target exports."""
    with open(DASHBOARD, encoding="utf-8") as handle:
        exprs = [t["expr"] for panel in json.load(handle)["panels"] for t in panel["targets"]]
    exported = prometheus.names()
    assert [expr for expr in exprs if chosen(expr)], "no panel chosen"
    for expr in filter(chosen, exprs):
        prometheus.query(expr)  # asserts status success: the PromQL parses
        assert set(re.findall(r"qvd_[a-z0-9_]+", expr)) <= exported, expr


def test_a_failed_start_is_counted_by_class_and_labels_stay_bounded(demo, node):
    images = os.path.join(demo.storage, "images")
    for name in os.listdir(images):
        os.unlink(os.path.join(images, name))
    demo.ok("vm", "start", "-f", "name=desk")
    wait_for(lambda: json.loads(demo.ok("vm", "list", "--json"))[0]["last_error"], 20,
             "the failed start")
    key = ("qvd_vm_start_failures_total",
           frozenset({("backend", "process"), ("reason", "error")}))
    wait_for(lambda: scrape(node.metrics_port).get(key) == 1.0, 10, "the failure counted")
    renewals = ("qvd_lease_renewal_seconds_count", frozenset())
    wait_for(lambda: scrape(node.metrics_port).get(renewals, 0) > 0, 10, "a lease renewal")
    samples = scrape(node.metrics_port)
    assert samples[("qvd_vm_start_seconds_count", frozenset({("backend", "process")}))] == 0
    assert samples[("qvd_db_query_seconds_count", frozenset({("connection", "main")}))] > 0
    assert samples[("qvd_lease_renewal_seconds_count", frozenset())] > 0
    assert 0 <= samples[("qvd_lease_age_seconds", frozenset())] < 3  # fence_timeout
    assert samples[("qvd_node_state", frozenset({("state", "running")}))] == 1
    qvd_labels = {name for (sample, labels) in samples if sample.startswith("qvd_")
                  for name, _ in labels}
    assert qvd_labels <= ALLOWED_LABELS


def test_a_taken_metrics_port_is_on_the_host_row(demo):
    import socket
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        node = HkdNode(demo, "node1", f"hkd.metrics.address = 127.0.0.1:{port}\n")
        try:
            node.start()  # the node runs: its VMs do not depend on the metrics
            host = wait_for(lambda: (row := json.loads(demo.ok("host", "list", "--json"))[0])
                            ["last_error"] and row, 15, "the error on the host row")
            assert f"metrics not served on 127.0.0.1:{port}" in host["last_error"]
            assert host["state"] == "running"
        finally:
            node.cleanup()


def test_a_bad_metrics_address_is_one_line(demo):
    node = HkdNode(demo, "node1", "hkd.metrics.address = nowhere\n")
    env = dict(os.environ, QVD_CONFIG=node.conf)
    result = subprocess.run([QVD_HKD], env=env, capture_output=True, text=True, timeout=30)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "qvd-hkd: hkd.metrics.address = nowhere: expected HOST:PORT, e.g. 127.0.0.1:9640, "
        "or empty for no metrics"]


def test_one_node_at_a_time_exports_the_cluster_gauges(demo):
    demo.ok("host", "add", "name=node2", "address=127.0.0.3")
    first, second = metrics_node(demo, "node1"), metrics_node(demo, "node2")
    try:
        def reporters():
            return [scrape(n.metrics_port)[("qvd_cluster_reporter", frozenset())]
                    for n in (first, second)]
        wait_for(lambda: sorted(reporters()) == [0.0, 1.0], 20, "one reporter of two")
        reporter, other = (first, second) if reporters()[0] == 1.0 else (second, first)
        other_series = scrape(other.metrics_port)
        assert not [name for name, _ in other_series if name.startswith("qvd_cluster_vms")]
        reporter.stop()  # its connection goes, and its lock with it: the other takes over
        wait_for(lambda: scrape(other.metrics_port)[("qvd_cluster_reporter", frozenset())]
                 == 1.0, 20, "the other node to take over")
        running = ("qvd_cluster_nodes", frozenset({("state", "running")}))
        wait_for(lambda: scrape(other.metrics_port).get(running) == 1, 20,
                 "the new reporter's cluster gauges: one node running")
    finally:
        first.cleanup()
        second.cleanup()


def vms_running(demo, count: int) -> bool:
    return vm_states(demo)["running"] == count


def test_a_running_agent_that_stops_answering_counts_ping_failures(demo, node):
    demo.ok("config", "set", "internal.hkd.vma.ping.interval=0.2")
    demo.ok("vm", "start", "-f", "name=desk")
    wait_for(lambda: vms_running(demo, 1), 20, "the VM running")
    failures = ("qvd_vma_ping_failures_total", frozenset())
    assert scrape(node.metrics_port)[failures] == 0  # the booting agent's silence is no failure
    (agent,) = vma_processes(demo, 1)
    os.kill(agent, signal.SIGSTOP)  # it accepts (the kernel does) but never answers
    try:
        wait_for(lambda: scrape(node.metrics_port)[failures] >= 1, 20, "a failed ping counted")
    finally:
        os.kill(agent, signal.SIGCONT)
    assert vms_running(demo, 1)  # one failure is not yet a dead agent


UPGRADE = {"Connection": "Upgrade", "Upgrade": "QVD/1.0"}


def l7r_client(node, authorization=None) -> QvdConnection:
    conn = QvdConnection("127.0.0.1", node.port, tls_context(cafile=node.cert, verify=False))
    conn.authorization = authorization
    return conn


def desktop(conn: QvdConnection, sent: bytes) -> None:
    """connect_to_vm; read the desktop's banner (Xvnc's RFB greeting), send `sent`."""
    reply = conn.request("/qvd/connect_to_vm", {"id": 1}, UPGRADE)
    assert reply.status == 101, reply.body
    banner = conn.buffer
    while len(banner) < 12:
        banner += conn.sock.recv(64)
    assert banner == b"RFB 003.008\n"
    conn.send_raw(sent)


def test_prometheus_counts_the_l7r_logins_sessions_bytes_and_takeover(demo, tmp_path,
                                                                     prometheus_for):
    metrics_port = free_port()
    node = l7r_node(demo, tmp_path, extra_conf=f"hkd.metrics.address = 127.0.0.1:{metrics_port}\n")
    try:
        prometheus = prometheus_for(f"127.0.0.1:{metrics_port}")
        opened = ("qvd_l7r_open_connections", frozenset())
        served = ("qvd_l7r_connections_total", frozenset({("result", "served")}))
        # l7r_node's probe ("accepting") is one connection served, counted once the acceptor
        # accepted and reaped it: gone from the open connections is not yet counted.
        wait_for(lambda: (now := scrape(metrics_port))[opened] == 0 and now[served] == 1, 10,
                 "the start's probe to be counted")

        for _ in range(2):
            with l7r_client(node) as conn:
                conn.login("alice@acme", "wrong")
                assert conn.list_of_vm().status == 401
        first = l7r_client(node)
        first.login("alice@acme", "secret")
        token = first.create_auth_token().json()["auth_token"]  # the one good password login
        with first:
            desktop(first, b"RFB 003.008\n")
            with l7r_client(node) as second:
                second.use_token(token)
                desktop(second, b"RFB 003.008\n")  # takes the desktop over: first is cut
                first.sock.settimeout(5)
                while first.sock.recv(4096):  # Xvnc's answer, then the end (else: timeout)
                    pass
                wait_for(lambda: scrape(metrics_port)[opened] == 1, 10, "one open connection")
        wait_for(lambda: demo.sql("SELECT count(*) FROM sessions WHERE ended_at IS NULL")
                 == [(0,)], 15, "both sessions to end")
        (down,), = demo.sql("SELECT sum(bytes_to_client) FROM sessions")
        durations = [float(d) for (d,) in demo.sql(
            "SELECT extract(epoch FROM ended_at - started_at) FROM sessions")]

        def value(promql: str) -> float | None:
            return prometheus.query(promql).get(frozenset())

        def by(promql: str, label: str) -> dict:
            return {dict(k)[label]: v for k, v in prometheus.query(promql).items()}
        wait_for(lambda: value("qvd_cluster_l7r_session_seconds_count") == 2, 30,
                 "prometheus to see both sessions")
        assert by("qvd_cluster_l7r_auth_attempts_total", "plugin") == {
            "default": 3, "token": 1, "ldap": 0}
        assert by("qvd_cluster_l7r_auth_failures_total", "plugin") == {
            "default": 2, "token": 0, "ldap": 0}
        assert value("qvd_cluster_l7r_takeovers_total") == 1
        assert by("qvd_cluster_l7r_sessions_ended_total", "reason") == {
            "client_closed": 1, "aborted": 1, "desktop_closed": 0, "error": 0}
        assert by("qvd_cluster_l7r_tunnel_bytes_total", "direction") == {
            "from_client": 24, "to_client": down}
        assert down > 24  # each banner, and Xvnc's answers
        assert value("qvd_cluster_l7r_session_seconds_sum") == pytest.approx(sum(durations))
        buckets = by("qvd_cluster_l7r_session_seconds_bucket", "le")
        assert buckets == {le: sum(d <= float(le) for d in durations) for le in buckets}
        assert buckets["+Inf"] == 2 and len(buckets) == len(SESSION_BUCKETS) + 1
        (requests,), = demo.sql("SELECT http_requests FROM host_counters")
        assert value("qvd_cluster_l7r_requests_total") == requests

        def connections():
            return by("qvd_l7r_connections_total", "result")
        wait_for(lambda: connections()["served"] == 1 + 4, 15,
                 "the probe and the four clients served")
        assert {k: v for k, v in connections().items() if k != "served"} == {
            "failed": 0, "killed": 0, "refused": 0, "dropped": 0}
        assert value("qvd_l7r_open_connections") == 0
    finally:
        node.cleanup()
