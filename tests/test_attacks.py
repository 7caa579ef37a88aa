"""The desktop user attacks, from inside real (unprivileged) containers: as the desktop account
(uid 1000) and as the container's root. Every attempt must fail and leave the node serving.

Each layer is attacked on its own: the agent's secret, the desktop port's relay, the user
namespace and its dropped capabilities, seccomp, the cgroup limits, the bridge's per-port
policy and the node's firewall, the image checks.
"""
import io
import os
import signal
import socket
import subprocess
import tarfile

import pytest

from hkd_nodes import wait_for
from qvd.hkd.backends.bridge import mac_for
from qvd.l7r.client import QvdConnection, tls_context
from test_lxc import VM_IP, attach, lxc_node, start, stop, vm_row  # noqa: F401 - the fixture
from vma_agent import call_as_node

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="containers need root")
PY = "/usr/bin/python3"  # the host's, bound read-only into the host-built image
HTTP_PROBE = (PY + " -c \"import sys, urllib.request, urllib.error\n"
              "req = urllib.request.Request(sys.argv[1], headers=dict(a.split(': ', 1) "
              "for a in sys.argv[2:]))\n"
              "try: print(urllib.request.urlopen(req, timeout=5).status)\n"
              "except urllib.error.HTTPError as e: print(e.code)\n\"")
# connect, send argv[3] (backslash escapes allowed) and end it, print what comes back
TCP_PROBE = (PY + " -c \"import socket, sys\ns = socket.create_connection((sys.argv[1], "
             "int(sys.argv[2])), timeout=3)\nsent = sys.argv[3] if len(sys.argv) > 3 else ''\n"
             "s.sendall(sent.encode().decode('unicode_escape').encode('latin-1'))\n"
             "s.shutdown(socket.SHUT_WR)\nprint('got', repr(s.recv(64)))\"")


def as_user(demo, vm_id, command: str) -> subprocess.CompletedProcess:
    """command as the desktop account (uid 1000), the one a desktop user has."""
    return subprocess.run(["lxc-attach", "-n", f"qvd-{vm_id}", "-P",
                           os.path.join(demo.storage, "lxc"), "-u", "1000", "-g", "1000",
                           "--clear-env", "--", "/bin/sh", "-c", command],
                          capture_output=True, text=True, timeout=60)


def test_the_desktop_user_cannot_command_the_agent(lxc_node, demo, tmp_path):
    vm_id = lxc_node.vm_id
    start(demo)
    assert call_as_node(demo, "x_start")[0] == 200  # the node's own call: account provisioned
    wait_for(lambda: call_as_node(demo, "x_state")[1]["x_state"] == "listening", 15, "Xvnc")
    evil = "/tmp/evil.sh"
    attach(demo, vm_id, f"printf '#!/bin/sh\\ntouch /tmp/pwned\\n' > {evil}; chmod 755 {evil}")
    url = f"http://{VM_IP}:3030/vma"
    for who in (as_user, attach):  # the desktop account, then the container's root
        for method in ("x_stop", f"x_start?vma.on_action.pre-connect={evil}",
                       "x_start?qvd.vm.user.name=root&vma.x_session=/tmp/evil.sh", "poweroff"):
            for headers in ("", "'Authorization: Bearer 0000'"):
                probe = who(demo, vm_id, f"{HTTP_PROBE} \"{url}/{method}\" {headers}")
                assert probe.stdout.split() == ["401"], probe.stdout + probe.stderr
    assert attach(demo, vm_id, "test -e /tmp/pwned && echo pwned").stdout == ""
    assert call_as_node(demo, "x_state")[1]["x_state"] == "listening"  # nothing was stopped
    assert call_as_node(demo)[0] == 200  # nor powered off
    # the secret itself: the desktop account cannot read it
    read = as_user(demo, vm_id, "cat /run/qvd-vma.secret")
    assert read.returncode != 0 and "Permission denied" in read.stderr
    # the desktop port passes nobody on without the secret: not from inside, not from the node
    for greeting in ("", "RFB 003.008\\n", "QVD-AUTH " + "0" * 64 + "\\r\\n"):
        probe = as_user(demo, vm_id, f"{TCP_PROBE} {VM_IP} 4100 \"{greeting}\"")
        assert "got b''" in probe.stdout, probe.stdout + probe.stderr
    with socket.create_connection((VM_IP, 4100), timeout=10) as raw:
        raw.sendall(b"RFB 003.008\n")
        assert raw.recv(64) == b""
    log = attach(demo, vm_id, "cat /var/log/qvd-vma.log").stdout
    assert "no valid node secret" in log and "desktop port: refused" in log
    stop(demo)


def test_a_client_cannot_choose_what_runs_or_as_whom(lxc_node, demo):
    """connect_to_vm with admin keys: refused before anything starts."""
    start(demo)
    vm_id = lxc_node.vm_id
    for key, value in (("qvd.vm.user.name", "root"), ("vma.on_action.connect", "/bin/sh"),
                       ("vma.x_session", "/tmp/evil.sh"), ("vma.on_state.connected", "/x")):
        with QvdConnection("127.0.0.1", lxc_node.port, tls_context(verify=False)) as conn:
            conn.login("alice@acme", "secret")
            answer = conn.request("/qvd/connect_to_vm", {"id": vm_id, key: value},
                                  {"Connection": "Upgrade", "Upgrade": "QVD/1.0"})
            assert answer.status == 403 and key in answer.body.decode()
    assert call_as_node(demo, "x_state")[1]["x_state"] == "stopped"
    stop(demo)


def test_root_in_the_container_is_nobody_on_the_node(lxc_node, demo):
    demo.ok("config", "set", "vm.lxc.pids.max=64")
    vm_id = lxc_node.vm_id
    row = start(demo)
    with open(f"/proc/{row['pid']}/status", encoding="ascii") as handle:
        status = dict(line.split(":", 1) for line in handle if ":" in line)
    assert status["Uid"].split()[0] == "100000"  # the container's root, as the node sees it
    assert status["Seccomp"].strip() == "2"  # LXC's seccomp filter
    caps = int(status["CapEff"], 16)
    for name, bit in (("sys_admin", 21), ("sys_module", 16), ("sys_time", 25), ("mknod", 27),
                      ("sys_rawio", 17), ("mac_admin", 33), ("mac_override", 32)):
        assert not caps & (1 << bit), f"the container's root still has {name}"
    attempts = {
        "mknod a block device": "mknod /tmp/sda b 8 0",
        "mount a filesystem": "mkdir -p /tmp/m && mount -t tmpfs none /tmp/m",
        "write to /proc/sys": "echo 1 > /proc/sys/kernel/sysrq",
        "write to /sys": "echo 1 > /sys/kernel/mm/ksm/run",
        "load a module": f"{PY} -c \"import ctypes, os, sys; libc = ctypes.CDLL(None, "
                         "use_errno=True); r = libc.init_module(b'x' * 64, 64, b''); "
                         "sys.exit(0 if r == 0 else 1)\"",
        "set the clock": "date -s 2001-01-01",
        "read a disk or memory": "for d in /dev/sda /dev/vda /dev/mem /dev/kmem /dev/port; do "
                                 "head -c 1 $d > /dev/null 2>&1 && exit 0; done; exit 1",
    }
    for what, command in attempts.items():
        done = attach(demo, vm_id, command)
        assert done.returncode != 0, f"{what} worked: {done.stdout} {done.stderr}"
    # a fork bomb of the desktop account stops at pids.max; the node keeps serving
    cgroup = f"/sys/fs/cgroup/pids/lxc.payload.qvd-{vm_id}"
    with open(f"{cgroup}/pids.max", encoding="ascii") as handle:
        assert handle.read().strip() == "64"
    bomb = as_user(demo, vm_id, "for i in $(seq 200); do sleep 60 > /dev/null 2>&1 & done "
                                "2>&1 | tail -1")
    assert "fork" in bomb.stdout.lower() or "resource" in bomb.stdout.lower(), bomb.stdout
    with open(f"{cgroup}/pids.current", encoding="ascii") as handle:
        assert int(handle.read()) <= 64
    assert call_as_node(demo)[0] == 200
    with open(f"{cgroup}/cgroup.procs", encoding="ascii") as handle:
        for pid in map(int, handle.read().split()):
            with open(f"/proc/{pid}/comm", encoding="ascii") as comm:
                if comm.read().strip() == "sleep":
                    os.kill(pid, signal.SIGKILL)
    stop(demo)


def test_a_vm_cannot_take_another_vms_address_or_reach_the_node(lxc_node, demo):
    demo.ok("vm", "add", "-t", "acme", "name=box2", "user=alice", "osf=lxc", "ip=10.231.0.11")
    box2 = demo.sql("SELECT id FROM vms WHERE name = 'box2'")[0][0]
    listener = socket.create_server(("0.0.0.0", 0))  # a node service on every address
    try:
        start(demo)
        start(demo, "box2")
        vm_id = lxc_node.vm_id
        # box claims box2's address and announces it (gratuitous ARP, its own MAC)
        claim = attach(demo, vm_id, "ip addr add 10.231.0.11/24 dev eth0 && " + PY + " -c \""
                       "import socket\ns = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)\n"
                       "s.bind(('eth0', 0))\nmine = bytes.fromhex(open('/sys/class/net/eth0/"
                       "address').read().strip().replace(':', ''))\nip = socket.inet_aton("
                       "'10.231.0.11')\narp = bytes.fromhex('0001080006040002') + mine + ip + "
                       "b'\\xff' * 6 + ip\nfor _ in range(5): s.send(b'\\xff' * 6 + mine + "
                       "b'\\x08\\x06' + arp)\nprint('sent')\"")
        assert "sent" in claim.stdout, claim.stderr
        # the node still reaches the real box2: its agent knows box2's secret, box's would not
        assert call_as_node(demo, vm_id=box2)[0] == 200
        neighbours = os.popen("ip neigh show 10.231.0.11").read()
        assert mac_for("10.231.0.10") not in neighbours
        # nothing on the node is open to a VM: not a service, not the database, not the L7R
        for port in (listener.getsockname()[1], int(demo.params["port"]), lxc_node.port):
            probe = attach(demo, vm_id, f"{TCP_PROBE} 10.231.0.1 {port}")
            assert "got" not in probe.stdout and "timed out" in probe.stderr, probe.stderr
        # nor another VM's desktop or agent
        for port in (3030, 4100):
            probe = attach(demo, vm_id, f"{TCP_PROBE} 10.231.0.11 {port}")
            assert "got" not in probe.stdout, probe.stdout
    finally:
        listener.close()
    stop(demo)
    stop(demo, "box2")


def _image(path, members) -> str:
    """A DI tarball: rootfs/ plus the given (TarInfo fields, data) members."""
    with tarfile.open(path, "w") as tar:
        for name in ("rootfs", "rootfs/etc", "lxc"):
            info = tarfile.TarInfo(name)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
        for fields, data in members:
            info = tarfile.TarInfo(fields.pop("name"))
            for key, value in fields.items():
                setattr(info, key, value)
            info.size = len(data or b"")
            tar.addfile(info, io.BytesIO(data) if data else None)
    return str(path)


def test_hostile_images_are_refused_with_the_reason(lxc_node, demo, tmp_path):
    canary = tmp_path / "outside"
    hook_ran = tmp_path / "hook-ran"
    hostile = {
        "dotdot": [({"name": f"rootfs/../../../../{canary}"}, b"x")],
        "setuid": [({"name": "rootfs/bin-su", "mode": 0o4755}, b"#!/bin/sh\n")],
        "device": [({"name": "rootfs/dev-sda", "type": tarfile.BLKTYPE, "devmajor": 8,
                     "devminor": 0}, None)],
        "hardlink": [({"name": "rootfs/etc/shadow", "type": tarfile.LNKTYPE,
                       "linkname": "/etc/shadow"}, None)],
        "hook": [({"name": "lxc/config-extra"},
                  f"lxc.hook.pre-start = /bin/sh -c 'touch {hook_ran}'\n".encode())],
    }
    demo.ok("config", "set", "vm.lxc.config.extra=1")
    for version, members in hostile.items():
        path = _image(tmp_path / f"{version}.tar", members)
        demo.ok("di", "add", "-t", "acme", f"path={path}", "osf=lxc", f"version={version}")
        demo.ok("di", "tag", "-t", "acme", "-f", f"version={version}", "tag=default")
        demo.ok("vm", "unblock", "-f", "name=box")  # failed starts in a row block a VM
        demo.ok("vm", "start", "-f", "name=box")
        row = wait_for(lambda: vm_row(demo)["state"] == "stopped" and vm_row(demo)["last_error"]
                       and vm_row(demo), 60, f"the {version} image to be refused")
        print(version, row["last_error"])
        assert {"dotdot": "outside", "setuid": "setuid", "device": "device",
                "hardlink": "link", "hook": "lxc.hook.pre-start"}[version] in row["last_error"]
    assert not canary.exists() and not hook_ran.exists()
    assert not os.path.exists("/rootfs")
