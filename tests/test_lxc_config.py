"""The LXC configuration a node writes, from data only: cgroup keys for either hierarchy (this
machine runs cgroup v1, so the v2 keys are checked here as text), the unprivileged and the
privileged mode, and the checks that refuse what a DI must not bring."""
import os

import pytest

from qvd.db.config import Config
from qvd.hkd.backends import lxc_cgroup
from qvd.hkd.backends.base import BackendError, VmSpec
from qvd.hkd.backends.idmap import IdMap


def test_cgroup_v2_keys_on_a_unified_host():
    lines = lxc_cgroup.limit_lines(256, 512, "0-1", 300, version=2)
    assert lines == ["lxc.cgroup2.memory.max = 268435456", "lxc.cgroup2.memory.swap.max = 0",
                     "lxc.cgroup2.cpu.weight = 50", "lxc.cgroup2.pids.max = 300",
                     "lxc.cgroup2.cpuset.cpus = 0-1"]
    assert not any(line.startswith("lxc.cgroup.") for line in lines)


def test_cgroup_v1_keys_on_a_legacy_host():
    lines = lxc_cgroup.limit_lines(256, 512, "", 300, version=1)
    assert {"lxc.cgroup.memory.limit_in_bytes = 268435456", "lxc.cgroup.cpu.shares = 512",
            "lxc.cgroup.pids.max = 300"} <= set(lines)
    assert not any("cgroup2" in line or "cpuset" in line for line in lines)


@pytest.mark.parametrize("shares, weight", [(1024, 100), (2, 1), (10 ** 6, 10000), (512, 50)])
def test_cpu_shares_become_a_weight_in_range(shares, weight):
    assert lxc_cgroup.cpu_weight(shares) == weight


def _backend(tmp_path, **settings):
    from qvd.hkd.backends.lxc import LxcBackend
    node = {"path.storage.root": str(tmp_path / "storage"), "path.run": str(tmp_path / "run"),
            "vm.network.bridge": "qvdcfg", "vm.network.ip.start": "10.235.0.10",
            "vm.network.netmask": "255.255.255.0", **settings}
    return LxcBackend(Config(node=node))


def _config(tmp_path, backend, trusted=False, **extra_files):
    vm = VmSpec(vm_id=7, name="box", memory=128, image="x", ip="10.235.0.10",
                image_trusted=trusted)
    paths = {}
    for name, text in extra_files.items():
        paths[name] = tmp_path / name
        paths[name].write_text(text)
    return backend.config_text(vm, "/r", "/h", str(paths["fstab"]) if "fstab" in paths else None,
                               str(paths["extra"]) if "extra" in paths else None)


def test_containers_are_unprivileged_unless_the_admin_says_otherwise(tmp_path):
    text = _config(tmp_path, _backend(tmp_path))
    assert "lxc.idmap = u 0 100000 65536" in text and "lxc.idmap = g 0 100000 65536" in text
    assert "lxc.include = /usr/share/lxc/config/common.conf" in text
    assert "sys_admin" in text.split("lxc.cap.drop = ")[1].splitlines()[0]
    assert "home none bind,create=dir,nodev,nosuid" in text
    assert "--secret-file /run/qvd-vma.secret" in text
    privileged = _config(tmp_path, _backend(tmp_path, **{"vm.lxc.privileged": "1"}))
    assert "lxc.idmap" not in privileged and "lxc.cap.drop" in privileged
    with pytest.raises(BackendError, match="idmap.size"):
        _backend(tmp_path, **{"vm.lxc.idmap.size": "1000"})


def test_an_untrusted_dis_extra_config_and_fstab_are_checked(tmp_path):
    allowed = {"vm.lxc.config.extra": "1", "vm.lxc.unionfs.bind.fstab": "1"}
    backend = _backend(tmp_path, **allowed)
    with pytest.raises(BackendError, match="lxc.hook.pre-start"):
        _config(tmp_path, backend, extra="lxc.hook.pre-start = /bin/true\n")
    with pytest.raises(BackendError, match="/etc"):
        _config(tmp_path, backend, fstab="/etc etc none bind,ro,nodev,nosuid 0 0\n")
    # off by default: nothing of the DI's is read at all
    assert "pre-start" not in _config(tmp_path, _backend(tmp_path),
                                       extra="lxc.hook.pre-start = /bin/true\n")
    # a trusted DI's own parts are the admin's word
    text = _config(tmp_path, backend, trusted=True, extra="lxc.prlimit.nofile = 1024\n",
                   fstab="/usr usr none bind,ro 0 0\n")
    assert "lxc.prlimit.nofile = 1024" in text and "lxc.mount.fstab" in text


@pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")
def test_the_id_map_shifts_an_old_home_once(tmp_path):
    home = tmp_path / "home"
    (home / "qvd").mkdir(parents=True)
    (home / "qvd" / "note").write_text("x")
    os.chown(home / "qvd", 1000, 1000)
    os.chown(home / "qvd" / "note", 1000, 1000)
    idmap = IdMap(100000, 65536)
    idmap.shift_tree(str(home))
    idmap.shift_tree(str(home))  # ids already in the range stay
    assert os.stat(home).st_uid == 100000
    assert (os.stat(home / "qvd").st_uid, os.stat(home / "qvd" / "note").st_gid) == \
        (101000, 101000)
