"""qvd-admin doctor: each check made to fail once on purpose, through the real CLI, and the
line naming the fix. What cannot be broken safely on a shared machine (user namespaces,
cgroup controllers) is only seen passing. The VM network is broken only where the test made
it: in a network namespace of its own (unshare --net, gone with its process), or by taking
CAP_NET_ADMIN from the doctor (setpriv); the host's links and rulesets are only read."""
import os
import shutil
import socket
import subprocess

import pytest

from qvd.hkd.backends.process import free_port
from tests_tls import write_pair


# A VM network of the tests' own, on no interface of a test machine, and a bridge name no
# one uses: what "healthy" means for the network checks.
NETWORK = ("vm.network.ip.start = 10.238.0.10\nvm.network.netmask = 255.255.255.0\n"
           "vm.network.bridge = qvddoc0\n")


def doctor(demo, extra: str = "", *args, env=None, wrap=()):
    """(exit status, {check: (level, text)}, stderr) of `qvd-admin doctor run`, run under
    the `wrap` command if given (unshare, setpriv)."""
    demo.write_conf(extra)
    if wrap:
        result = subprocess.run([*wrap, *demo.cli_command(), "doctor", "run", *args],
                                capture_output=True, text=True, env=env or demo.env(),
                                timeout=60)
    else:
        result = demo.cli("doctor", "run", *args, env=env)
    checks = {}
    for line in result.stdout.splitlines():
        level, rest = line[:4].strip(), line[6:]
        name, _, text = rest.partition("  ")
        checks[name.strip()] = (level, text.strip())
    return result.returncode, checks, result.stderr


@pytest.fixture
def healthy(demo, tmp_path):
    """A node that passes: registered (node1), a certificate, a free port, the process
    backend; the test's certificate is valid one day, so that check warns."""
    cert, key, _ = write_pair(tmp_path)
    demo.ok("config", "ssl", "--cert", cert, "--key", key)
    demo.extra = (f"nodename = node1\nvm.hypervisor = process\nl7r.address = 127.0.0.1\n"
                  f"l7r.port = {free_port()}\npath.run = {tmp_path}/run\n")
    return demo


def test_a_healthy_node_passes_with_one_line_per_check(healthy):
    status, checks, _ = doctor(healthy, healthy.extra)
    assert status == 0, checks
    assert list(checks) == ["database", "node name", "clock", "certificate", "L7R port",
                            "metrics port", "user namespaces", "cgroups", "hypervisor",
                            "bridge", "nftables", "disk"]
    assert {name for name, (level, _) in checks.items() if level != "ok"} == {"certificate"}
    assert checks["certificate"][1].startswith("the L7R certificate (CN=qvd-test) expires in ")
    assert "renew it and store it with 'qvd-admin config ssl'" in checks["certificate"][1]
    assert "node1' is host" in checks["node name"][1]


def test_no_database(healthy):
    status, checks, stderr = doctor(healthy, healthy.extra + f"database.port = {free_port()}\n")
    assert status == 1
    assert checks["database"][0] == "FAIL"
    assert "cannot be reached" in checks["database"][1]
    assert "fix database.* in the node file" in checks["database"][1]
    assert checks["node name"] == ("skip", "not checked: the database cannot be reached")
    assert stderr.strip() == "qvd-admin: 1 check(s) block this node: database"


def test_a_schema_behind(healthy):
    healthy.sql("UPDATE alembic_version SET version_num = '0001'")
    status, checks, _ = doctor(healthy, healthy.extra)
    assert status == 1
    assert checks["database"][0] == "FAIL"
    assert checks["database"][1].endswith("run 'qvd-admin db upgrade'")


def test_a_node_name_not_registered(healthy):
    status, checks, _ = doctor(healthy, healthy.extra + "nodename = ghost\n")
    assert status == 1
    assert checks["node name"] == ("FAIL", "no host named 'ghost': add it with 'qvd-admin "
                                           "host add name=ghost address=THIS_NODE_ADDRESS'")


def test_a_clock_offset_beyond_the_tolerance_warns(healthy):
    # The machine's clock is the database's: a tolerance of a nanosecond is what fails here.
    status, checks, _ = doctor(healthy, healthy.extra, "--clock-tolerance", "0.000000001")
    assert status == 0  # a warning does not block
    assert checks["clock"][0] == "WARN"
    assert "run an NTP client (chrony)" in checks["clock"][1]


def test_no_certificate_and_a_broken_one(healthy):
    healthy.sql("UPDATE ssl_configs SET value = 'not a certificate' WHERE key = 'l7r.ssl.cert'")
    status, checks, _ = doctor(healthy, healthy.extra)
    assert status == 1
    assert checks["certificate"] == ("FAIL", "the stored L7R certificate is not a PEM "
                                             "certificate: store a valid one with 'qvd-admin "
                                             "config ssl'")
    healthy.sql("DELETE FROM ssl_configs")
    status, checks, _ = doctor(healthy, healthy.extra)
    assert checks["certificate"] == ("FAIL", "no L7R certificate stored: store one with "
                                             "'qvd-admin config ssl --cert FILE --key FILE'")


def test_a_taken_l7r_port_names_its_holder(healthy):
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        status, checks, _ = doctor(healthy, healthy.extra + f"l7r.port = {port}\n"
                                   f"hkd.metrics.address = 127.0.0.1:{port}\n")
    assert status == 1
    level, text = checks["L7R port"]
    assert level == "FAIL" and f"127.0.0.1:{port} is held by " in text
    assert f"(pid {os.getpid()})" in text and text.endswith("set l7r.port to a free port")
    assert checks["metrics port"][0] == "WARN"  # the node runs without metrics
    assert "set hkd.metrics.address to a free port" in checks["metrics port"][1]


def test_too_little_disk(healthy):
    status, checks, _ = doctor(healthy, healthy.extra, "--min-free-gib", "1000000000")
    assert status == 1
    assert checks["disk"][0] == "FAIL" and "move path.storage.root" in checks["disk"][1]


def test_missing_lxc_tools(healthy, tmp_path):
    empty = tmp_path / "empty-path"
    empty.mkdir()
    status, checks, _ = doctor(healthy, healthy.extra + "vm.hypervisor = lxc\n",
                               env=healthy.env(PATH=str(empty)))
    assert status == 1
    assert checks["hypervisor"] == ("FAIL", "lxc: lxc-start, lxc-stop, lxc-info, nft not "
                                            "found: install the Debian packages lxc and "
                                            "nftables")
    assert checks["nftables"] == ("FAIL", "nft not found: install the Debian package nftables")


def test_libvirt_not_answering(healthy, tmp_path):
    uri = f"qemu:///system?socket={tmp_path}/no-libvirt.sock"
    status, checks, _ = doctor(healthy, healthy.extra + f"vm.hypervisor = kvm\nvm.kvm.uri = {uri}\n")
    assert status == 1
    level, text = checks["hypervisor"]
    assert level == "FAIL" and text.startswith(f"kvm: libvirt at {uri} does not answer")
    assert text.endswith("start libvirtd or fix vm.kvm.uri")


def test_bad_input_is_one_line(healthy):
    healthy.write_conf(healthy.extra)
    result = healthy.cli("doctor", "run", "--min-free-gib", "lots")
    assert result.returncode == 2 and "'lots' is not a valid float" in result.stderr
    assert "Traceback" not in result.stderr


def need_root() -> None:
    if os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("setpriv"):
        pytest.skip("needs root and util-linux's unshare and setpriv")


def test_the_vm_network_passes_for_lxc(healthy):
    need_root()
    _, checks, _ = doctor(healthy, healthy.extra + "vm.hypervisor = lxc\n" + NETWORK)
    assert checks["bridge"] == ("ok", "qvddoc0 will be made at the first VM's start, with "
                                      "10.238.0.1/24; 10.238.0.0/24 is on no other interface")
    assert checks["nftables"] == ("ok", "table inet qvd_qvddoc0 not made yet; its rules pass "
                                        "'nft --check' and are loaded at the first VM's start")
    # The process backend has no VM network: nothing to check.
    _, checks, _ = doctor(healthy, healthy.extra)
    assert checks["bridge"] == ("ok", "no VM network: not used by vm.hypervisor = process")


def test_a_vm_network_on_another_interface(healthy):
    """In a namespace of the test's own, a link already holds part of the VM network (a
    leftover bridge, a LAN on the same range)."""
    need_root()
    setup = ("ip link add qvdclash type veth peer name qvdclash1 && "
             "ip addr add 10.238.0.200/25 dev qvdclash && exec \"$@\"")
    status, checks, _ = doctor(healthy, healthy.extra + "vm.hypervisor = lxc\n" + NETWORK,
                               wrap=("unshare", "--net", "--", "sh", "-c", setup, "sh"))
    assert status == 1
    assert checks["bridge"] == ("FAIL", "the VM network 10.238.0.0/24 is also on qvdclash "
                                        "(10.238.0.200/25): VMs on qvddoc0 would be "
                                        "unreachable; remove that address or choose another "
                                        "vm.network.ip.start")


def test_a_bridge_name_held_by_another_link(healthy):
    status, checks, _ = doctor(healthy, healthy.extra + "vm.hypervisor = kvm\n" + NETWORK
                               + "vm.network.bridge = lo\n")
    assert status == 1
    assert checks["bridge"] == ("FAIL", "lo exists but is not a bridge: choose another "
                                        "vm.network.bridge")


def test_a_gateway_outside_the_vm_network(healthy):
    status, checks, _ = doctor(healthy, healthy.extra + "vm.hypervisor = lxc\n" + NETWORK
                               + "vm.network.gateway = 192.168.77.1\n")
    assert status == 1
    assert checks["bridge"] == ("FAIL", "the node's address on it, 192.168.77.1 "
                                        "(vm.network.gateway), is outside the VM network "
                                        "10.238.0.0/24: fix that setting (in the node file, "
                                        "or with 'qvd-admin config set')")
    assert checks["nftables"][0] == "skip"


def test_without_cap_net_admin_neither_bridge_nor_firewall(healthy):
    need_root()
    status, checks, _ = doctor(healthy, healthy.extra + "vm.hypervisor = lxc\n" + NETWORK,
                               wrap=("setpriv", "--bounding-set", "-net_admin"))
    assert status == 1
    assert checks["bridge"] == ("FAIL", "qvddoc0 does not exist and this process may not "
                                        "make it (no CAP_NET_ADMIN): run qvd-hkd as root")
    level, text = checks["nftables"]
    assert level == "FAIL" and text.startswith("nft cannot read the ruleset (Operation not "
                                               "permitted")
    assert text.endswith("run qvd-hkd as root (it needs CAP_NET_ADMIN), on a kernel with "
                         "nf_tables")


def test_a_bad_firewall_allowance_is_named(healthy):
    need_root()
    status, checks, _ = doctor(healthy, healthy.extra + "vm.hypervisor = lxc\n" + NETWORK
                               + "vm.network.allow = 10.1.0.0/16, the-database\n")
    assert status == 1
    level, text = checks["nftables"]
    assert level == "FAIL" and text.startswith("vm.network.allow: 'the-database' is not")
    assert text.endswith("fix it (in the node file, or with 'qvd-admin config set')")
