"""Hostile DIs (issue 12): unpacking refuses what would reach outside the store or carry
privileges, the extended parts of an untrusted DI pass an allow-list, names are checked."""
import io
import json
import os
import stat
import tarfile

import pytest

from qvd.db.names import BadName, check_name, safe_file_name
from qvd.hkd.backends import lxc_extra
from qvd.hkd.backends.base import BackendError, VmSpec
from qvd.hkd.backends.lxc_storage import Storage
from qvd.l7r.auth.autocreate import create_user
from qvd.l7r.auth.base import AuthFailed

as_root = pytest.mark.skipif(os.geteuid() != 0, reason="unpacking owners and devices needs root")


def member(name, kind="file", data=b"", mode=0o644, link="", uid=0, gid=0, device=(1, 3)):
    info = tarfile.TarInfo(name)
    info.mode, info.uid, info.gid = mode, uid, gid
    if kind == "dir":
        info.type, info.mode = tarfile.DIRTYPE, mode if mode != 0o644 else 0o755
    elif kind == "symlink":
        info.type, info.linkname = tarfile.SYMTYPE, link
    elif kind == "hardlink":
        info.type, info.linkname = tarfile.LNKTYPE, link
    elif kind in ("chr", "blk"):
        info.type = tarfile.CHRTYPE if kind == "chr" else tarfile.BLKTYPE
        info.devmajor, info.devminor = device
    elif kind == "fifo":
        info.type = tarfile.FIFOTYPE
    else:
        info.size = len(data)
    return info, (io.BytesIO(data) if kind == "file" else None)


def make_image(path, *members):
    with tarfile.open(path, "w") as tar:
        for info, data in members:
            tar.addfile(info, data)
    return str(path)


@pytest.fixture
def store(tmp_path):
    """A storage root, an image to fill, and a canary place outside the store."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "victim").write_text("the node's file\n")
    root = tmp_path / "storage"
    return Storage(str(root)), tmp_path / "images", outside


def snapshot(directory):
    entries = [os.path.join(path, n) for path, dirs, files in os.walk(directory)
               for n in dirs + files]
    return sorted((p, os.lstat(p).st_mode, os.lstat(p).st_nlink) for p in entries)


def refused(store, members, words, **kwargs):
    storage, images, outside = store
    images.mkdir(exist_ok=True)
    image = make_image(images / "di.tar", *members)
    before = snapshot(outside)
    victim = os.stat(outside / "victim")
    with pytest.raises(BackendError) as caught:
        storage.basefs(image, **kwargs)
    message = str(caught.value)
    for word in words:
        assert word in message, message
    assert "\n" not in message
    # nothing written outside the store, nothing left inside it
    assert snapshot(outside) == before
    after = os.stat(outside / "victim")
    assert (after.st_mode, after.st_uid, after.st_nlink, after.st_mtime_ns) == \
        (victim.st_mode, victim.st_uid, victim.st_nlink, victim.st_mtime_ns)
    assert (outside / "victim").read_text() == "the node's file\n"
    assert [n for n in os.listdir(os.path.join(storage.root, "basefs"))
            if not n.endswith(".lock")] == []
    return message


# --- unpacking ---------------------------------------------------------------------------------
@as_root
def test_dotdot_member_is_refused(store):
    refused(store, [member("etc", "dir"), member("etc/../../../outside/canary", data=b"x")],
            ["DI di.tar refused", "'..'", "etc/../../../outside/canary"])


@as_root
def test_absolute_member_is_refused(store):
    _, _, outside = store
    refused(store, [member(f"{outside}/canary", data=b"x")],
            ["absolute path", f"{outside}/canary"])
    assert not (outside / "canary").exists()


@as_root
def test_hard_link_to_a_node_file_is_refused(store):
    _, _, outside = store
    message = refused(store, [member("etc", "dir"),
                              member("etc/passwd", "hardlink", link="/etc/passwd")],
                      ["hard link", "/etc/passwd", "etc/passwd"])
    assert "absolute" in message
    # on the store's own file system too (where link() would have worked)
    refused(store, [member("victim", "hardlink", link=str(outside / "victim"))],
            ["hard link", "absolute"])
    refused(store, [member("victim", "hardlink", link="../../outside/victim")], ["'..'"])


@as_root
def test_hard_link_through_a_symlink_is_refused(store):
    _, _, outside = store
    refused(store, [member("shadow", "symlink", link=str(outside / "victim")),
                    member("copy", "hardlink", link="shadow")],
            ["hard link to 'shadow'", "not a regular file"])
    refused(store, [member("out", "symlink", link=str(outside)),
                    member("copy", "hardlink", link="out/victim")], ["out/victim"])


@as_root
def test_writing_through_a_symlink_is_refused(store):
    _, _, outside = store
    refused(store, [member("evil", "symlink", link=str(outside)),
                    member("evil/canary", data=b"owned\n")],
            ["member 'evil/canary' would be written through the symbolic link 'evil'"])
    assert not (outside / "canary").exists()
    # a file over an earlier link would follow it too
    refused(store, [member("passwd", "symlink", link=str(outside / "victim")),
                    member("passwd", data=b"owned\n")], ["comes twice"])
    # and so would a directory's owner and mode, set once everything is unpacked
    refused(store, [member("etc", "symlink", link=str(outside)),
                    member("etc", "dir", mode=0o777)], ["comes twice"])
    refused(store, [member("a", "symlink", link="/"), member("a/b/c", data=b"x")],
            ["symbolic link 'a'"])


@as_root
def test_device_nodes_are_refused(store):
    refused(store, [member("dev", "dir"), member("dev/mem", "chr", device=(1, 1))],
            ["member 'dev/mem' is a character device", "trusted"])
    refused(store, [member("disk", "blk", device=(8, 0))], ["block device"])


@as_root
def test_setuid_and_setgid_files_are_refused(store):
    refused(store, [member("bin", "dir"), member("bin/su", data=b"#!/bin/sh\n", mode=0o4755)],
            ["member 'bin/su' is setuid/setgid (mode 4755)", "trusted"])
    refused(store, [member("wall", data=b"x", mode=0o2755)], ["setuid/setgid"])


@as_root
def test_an_image_above_the_size_cap_is_refused(store):
    refused(store, [member("big", data=b"x" * 4096)], ["more than 2048 bytes",
                                                     "vm.lxc.image.max_size"], max_bytes=2048)


@as_root
def test_a_hostile_extended_image_changes_nothing_outside(store):
    """Everything at once in an extended layout: still nothing reaches the canary."""
    _, _, outside = store
    refused(store, [member("rootfs", "dir"), member("rootfs/tmp", "dir", mode=0o1777),
                    member("rootfs/etc", "symlink", link=str(outside)),
                    member("rootfs/etc/shadow", data=b"root::0:0:::::\n")], ["rootfs/etc"])


def _tree(root):
    return {os.path.relpath(os.path.join(path, n), root): os.lstat(os.path.join(path, n))
            for path, dirs, files in os.walk(root) for n in dirs + files}


@as_root
def test_a_plain_image_unpacks_with_its_modes_links_and_owners(store):
    storage, images, _ = store
    images.mkdir()
    image = make_image(images / "ok.tar", member(".", "dir", mode=0o777),
                       member("tmp", "dir", mode=0o1777), member("usr/bin/busybox", data=b"bb",
                                                                  mode=0o755, uid=0),
                       member("bin", "symlink", link="usr/bin"),
                       member("etc/localtime", "symlink", link="/usr/share/zoneinfo/UTC"),
                       member("etc/up", "symlink", link="../../../.."),
                       member("var/mail", "dir", mode=0o2775, gid=8),
                       member("home/alice/notes", data=b"n", uid=1000, gid=1000),
                       member("usr/bin/sh", "hardlink", link="usr/bin/busybox"),
                       member("run/initctl", "fifo"))
    base = storage.basefs(image)
    assert base == os.path.join(storage.root, "basefs", "ok.tar")
    assert storage.basefs(image) == base  # once per node
    tree = _tree(base)
    assert stat.S_IMODE(os.stat(base).st_mode) == 0o755  # the image's root: never writable
    assert stat.S_IMODE(tree["tmp"].st_mode) == 0o1777  # the sticky /tmp kept
    assert stat.S_IMODE(tree["var/mail"].st_mode) == 0o2775 and tree["var/mail"].st_gid == 8
    assert os.readlink(os.path.join(base, "etc/localtime")) == "/usr/share/zoneinfo/UTC"
    assert tree["usr/bin/sh"].st_ino == tree["usr/bin/busybox"].st_ino
    assert stat.S_ISFIFO(tree["run/initctl"].st_mode)
    assert tree["home/alice/notes"].st_uid == 1000
    assert stat.S_IMODE(tree["home"].st_mode) == 0o755  # implied directories
    assert not stat.S_IMODE(os.stat(base + ".lock").st_mode) & 0o077
    assert Storage.layout(base) == (base, None, None, {})


@as_root
def test_a_trusted_image_keeps_setuid_files_and_devices(store):
    storage, images, _ = store
    images.mkdir()
    image = make_image(images / "trusted.tar", member("bin/su", data=b"su", mode=0o4755),
                       member("dev/null", "chr", mode=0o666, device=(1, 3)))
    base = storage.basefs(image, trusted=True)
    assert stat.S_IMODE(os.stat(os.path.join(base, "bin/su")).st_mode) == 0o4755
    null = os.lstat(os.path.join(base, "dev/null"))
    assert stat.S_ISCHR(null.st_mode) and os.major(null.st_rdev) == 1
    # trust lifts only those two rules
    with pytest.raises(BackendError, match="written through"):
        storage.basefs(make_image(images / "still.tar", member("x", "symlink", link="/etc"),
                                  member("x/y", data=b"")), trusted=True)


@as_root
def test_a_shift_gives_its_own_tree_owned_by_the_shifted_ids(store):
    storage, images, _ = store
    images.mkdir()
    image = make_image(images / "u.tar", member(".", "dir"), member("root", "dir", mode=0o700),
                       member("home/alice/notes", data=b"n", uid=1000, gid=1001),
                       member("lnk", "symlink", link="/root", uid=5, gid=6))
    privileged = storage.basefs(image)
    shifted = storage.basefs(image, shift=100000)
    assert shifted == os.path.join(storage.root, "basefs", "u.tar@100000") != privileged
    tree = _tree(shifted)
    assert (os.stat(shifted).st_uid, os.stat(shifted).st_gid) == (100000, 100000)
    assert (tree["root"].st_uid, tree["root"].st_gid) == (100000, 100000)
    assert (tree["home/alice/notes"].st_uid, tree["home/alice/notes"].st_gid) == (101000, 101001)
    assert (tree["home"].st_uid, tree["lnk"].st_uid, tree["lnk"].st_gid) == (100000, 100005,
                                                                             100006)
    assert os.stat(os.path.join(privileged, "home/alice/notes")).st_uid == 1000


@as_root
def test_extended_parts_that_are_links_are_refused(store, tmp_path):
    storage, images, outside = store
    images.mkdir()
    (outside / "fstab").write_text("none proc proc nodev,nosuid 0 0\n")
    base = storage.basefs(make_image(images / "ext.tar", member("rootfs", "dir"),
                                     member("lxc", "dir"),
                                     member("lxc/fstab", "symlink", link=str(outside / "fstab"))))
    with pytest.raises(BackendError, match="lxc/fstab is not a regular file"):
        Storage.layout(base)
    base = storage.basefs(make_image(images / "ext2.tar", member("rootfs", "dir"),
                                     member("hooks", "symlink", link=str(outside))))
    with pytest.raises(BackendError, match="hooks is not a directory"):
        Storage.layout(base)
    # a link named rootfs is no extended layout: the node never takes the node's / as a root
    base = storage.basefs(make_image(images / "basic.tar", member("rootfs", "symlink", link="/")))
    assert Storage.layout(base) == (base, None, None, {})


def test_vm_spec_carries_the_trust(tmp_path):
    spec = VmSpec(vm_id=1, name="x", memory=64, image="i", ip="10.0.0.2")
    assert spec.image_trusted is False
    assert VmSpec(vm_id=1, name="x", memory=64, image="i", ip="10.0.0.2",
                  image_trusted=True).image_trusted


# --- lxc/config-extra and lxc/fstab --------------------------------------------------------------
def _file(tmp_path, text, name="config-extra"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


GOOD_EXTRA = """# limits of this image
lxc.environment = LANG=C.UTF-8
lxc.cgroup2.cpu.max = 50000 100000
lxc.cgroup.cpu.cfs_quota_us = 50000
lxc.prlimit.nofile = 4096
lxc.sysctl.net.ipv4.ip_forward = 0

lxc.mount.entry = tmpfs run/scratch tmpfs nodev,nosuid,create=dir,size=64m 0 0
"""


def test_config_extra_allowed_keys_pass(tmp_path):
    assert lxc_extra.checked_config_extra(_file(tmp_path, GOOD_EXTRA)) == GOOD_EXTRA
    assert lxc_extra.checked_config_extra(_file(tmp_path, "lxc.environment = A=1")) == \
        "lxc.environment = A=1\n"


@pytest.mark.parametrize("line,words", [
    ("lxc.hook.pre-start = /bin/sh -c 'touch /tmp/pwned'",
     ["lxc.hook.pre-start", "hooks run as root"]),
    ("lxc.include = /etc/shadow", ["lxc.include"]),
    ("lxc.idmap = u 0 0 65536", ["lxc.idmap"]),
    ("lxc.apparmor.profile = unconfined", ["lxc.apparmor.profile"]),
    ("lxc.seccomp.profile = /dev/null", ["lxc.seccomp.profile"]),
    ("lxc.cap.keep = sys_admin", ["lxc.cap.keep"]),
    ("lxc.rootfs.path = dir:/", ["lxc.rootfs.path"]),
    ("lxc.init.cmd = /bin/sh", ["lxc.init.cmd"]),
    ("lxc.net.1.type = phys", ["lxc.net.1.type"]),
    ("lxc.mount.auto = proc:rw sys:rw", ["lxc.mount.auto"]),
    ("lxc.cgroup.devices.allow = a", ["lxc.cgroup.devices.allow", "devices"]),
    ("lxc.cgroup2.devices.allow = b 8:* rwm", ["lxc.cgroup2.devices.allow"]),
    ("lxc.autodev = 0", ["lxc.autodev"]),
    ("lxc.cgroup2.memory.max = max", ["lxc.cgroup2.memory.max", "limits"]),
    ("lxc.cgroup2.pids.max = max", ["lxc.cgroup2.pids.max"]),
    ("lxc.prlimit.rtprio = 99", ["lxc.prlimit.rtprio"]),
    ("lxc.console.logfile = /etc/cron.d/x", ["lxc.console.logfile"]),
    ("lxc.sysctl.kernel.core_pattern = |/bin/sh", ["lxc.sysctl.kernel.core_pattern"]),
    ("lxc.environment = PGPASSWORD", ["NAME=VALUE"]),
    ("lxc.environment = QVD_VM_ID=7", ["QVD_VM_ID"]),
    ("lxc.mount.entry = /etc etc/host none bind,nodev,nosuid 0 0", ["bind mounts are refused"]),
    ("lxc.mount.entry = proc mnt/proc proc nodev,nosuid 0 0", ["'proc' is refused"]),
    ("lxc.mount.entry = tmpfs /etc tmpfs nodev,nosuid 0 0", ["absolute"]),
    ("lxc.mount.entry = tmpfs ../../x tmpfs nodev,nosuid 0 0", ["'..'"]),
    ("lxc.mount.entry = tmpfs mnt tmpfs nodev 0 0", ["nodev,nosuid"]),
    ("lxc.mount.entry = tmpfs mnt tmpfs nodev,nosuid,suid 0 0", ["option 'suid'"]),
    ("lxc.mount.fstab = /etc/fstab", ["lxc.mount.fstab"]),
    ("not a key", ["expected `lxc.KEY = VALUE`"]),
    ("lxc.environment = A=1\rlxc.hook.start = /x", ["control character"]),
])
def test_config_extra_refused_lines_name_line_and_key(tmp_path, line, words):
    path = _file(tmp_path, f"# a DI's extra\nlxc.environment = LANG=C\n{line}\n")
    with pytest.raises(BackendError) as caught:
        lxc_extra.checked_config_extra(path)
    message = str(caught.value)
    assert "lxc/config-extra, line 3" in message and "\n" not in message
    for word in words:
        assert word in message, message


def test_config_extra_that_is_a_link_is_not_read(tmp_path):
    target = _file(tmp_path, "lxc.environment = SECRET=1\n", "node-file")
    os.symlink(target, tmp_path / "config-extra")
    with pytest.raises(BackendError, match="must be a plain file"):
        lxc_extra.checked_config_extra(str(tmp_path / "config-extra"))


def test_fstab_pseudo_file_systems_and_binds_inside_the_storage_root(tmp_path):
    root = tmp_path / "storage"
    (root / "shared").mkdir(parents=True)
    text = ("# tmp in memory\ntmpfs tmp tmpfs nodev,nosuid,size=1g 0 0\n"
            f"{root}/shared srv/shared none bind,ro,nodev,nosuid,create=dir 0 0\n"
            "mqueue dev/mqueue mqueue nodev,nosuid,noexec\n")
    path = _file(tmp_path, text, "fstab")
    assert lxc_extra.checked_fstab(path, str(root)) == path


@pytest.mark.parametrize("entry,words", [
    ("/etc etc/node none bind,nodev,nosuid 0 0", ["not inside path.storage.root"]),
    ("{root}/shared/../../outside srv none bind,nodev,nosuid 0 0",
     ["not inside path.storage.root"]),
    ("{root}/escape srv none bind,nodev,nosuid 0 0", ["not inside path.storage.root"]),
    ("{root}/homefs/7 srv none bind,nodev,nosuid 0 0", ["node's own homefs/"]),
    ("{root}/lxc/qvd-7/vma.secret s none bind,nodev,nosuid 0 0", ["node's own lxc/"]),
    ("{root} srv none rbind,nodev,nosuid 0 0", ["not inside path.storage.root"]),
    ("shared srv none bind,nodev,nosuid 0 0", ["absolute path inside"]),
    ("{root}/shared /srv none bind,nodev,nosuid 0 0", ["absolute: give it relative"]),
    ("{root}/shared srv/../../.. none bind,nodev,nosuid 0 0", ["'..'"]),
    ("{root}/shared srv none bind,nosuid 0 0", ["nodev,nosuid"]),
    ("{root}/shared srv none bind,nodev,nosuid,dev 0 0", ["option 'dev'"]),
    ("/dev/sda1 mnt ext4 nodev,nosuid 0 0", ["type 'ext4' is refused"]),
    ("proc mnt/proc proc nodev,nosuid 0 0", ["type 'proc' is refused"]),
    ("sysfs mnt/sys sysfs nodev,nosuid 0 0", ["type 'sysfs' is refused"]),
    ("tmpfs", ["is not `source target type options"]),
])
def test_fstab_refused_entries_name_the_line(tmp_path, entry, words):
    root = tmp_path / "storage"
    (root / "shared").mkdir(parents=True)
    (tmp_path / "outside").mkdir()
    os.symlink(tmp_path / "outside", root / "escape")  # realpath: a link out is outside
    path = _file(tmp_path, "tmpfs tmp tmpfs nodev,nosuid 0 0\n" + entry.format(root=root) + "\n",
                 "fstab")
    with pytest.raises(BackendError) as caught:
        lxc_extra.checked_fstab(path, str(root))
    message = str(caught.value)
    assert "lxc/fstab, line 2" in message
    for word in words:
        assert word in message, message


# --- names -------------------------------------------------------------------------------------
@pytest.mark.parametrize("value", ["a/b", "..", ".", "-rf", "", "a b", "x\ny", "a" * 65, "é",
                                   "alice@acme", "a#b", "lab;rm"])
def test_bad_names(value):
    with pytest.raises(BadName) as caught:
        check_name("VM name", value)
    message = str(caught.value)
    assert message.startswith("VM name '") and "may only contain letters, digits" in message
    assert "\n" not in message and "(at most 64" in message
    assert isinstance(caught.value, ValueError)


def test_good_names_and_file_names():
    for value in ("desk", "lab-1", "2026-11-21-1", "node1.example.com", "a_b", "A" * 64):
        assert check_name("name", value) == value
    assert check_name("login", "x" * 100, max_len=128)
    assert safe_file_name("my image (v2);.tar.gz") == "my_image__v2__.tar.gz"
    assert safe_file_name("x" * 300 + ".tar") .endswith("x.tar")
    assert len(safe_file_name("x" * 300 + ".tar")) == 100


def test_a_directory_login_qvd_cannot_name_is_refused_at_login():
    with pytest.raises(AuthFailed, match="login 'bob smith' may only contain"):
        create_user(None, None, 1, "bob smith")  # refused before the database is touched


# --- the CLI -----------------------------------------------------------------------------------
def _dis(demo):
    return {d["version"]: d for d in json.loads(demo.ok("di", "list", "--json"))}


def test_di_add_trusted(demo, tmp_path):
    image = tmp_path / "my desktop;1.tar"
    image.write_bytes(b"trusted")
    out = demo.ok("di", "add", "-t", "acme", f"path={image}", "osf=desktop", "version=t1",
                  "trusted=1")
    assert "trusted" in out
    dis = _dis(demo)
    assert dis["t1"]["trusted"] is True and dis["v1"]["trusted"] is False
    assert dis["t1"]["path"].endswith("-t1-my_desktop_1.tar")  # fit for paths and mounts
    assert os.path.isfile(os.path.join(demo.storage, "images", dis["t1"]["path"]))
    assert [d["version"] for d in json.loads(demo.ok("di", "list", "--json", "-f",
                                                     "trusted=1"))] == ["t1"]
    bad = demo.cli("di", "add", "-t", "acme", f"path={image}", "osf=desktop", "trusted=maybe")
    assert bad.returncode == 2 and "trusted must be 1 or 0" in bad.stderr


def test_bulk_names_are_checked_whole(demo):
    before = demo.snapshot()
    result = demo.cli("vm", "add", "-t", "acme", "name=" + "l" * 62, "user=alice",
                      "osf=desktop", "bulk=10")  # lll...-10 is 65 long
    assert result.returncode == 1 and "-10' may only contain" in result.stderr
    assert ["-10' may only contain" in error for error in demo.take_failed_changes()] == [True]
    assert demo.snapshot() == before
    demo.ok("vm", "add", "-t", "acme", "name=" + "l" * 62, "user=alice", "osf=desktop",
            "bulk=9")


def test_the_node_learns_the_trust_from_the_di(demo, tmp_path):
    """VmStore.spec: the DI the VM's tag names, trusted or not (dis.trusted)."""
    import asyncio

    import psycopg
    from psycopg.rows import dict_row

    from qvd.hkd.vm_store import VmStore

    class Db:  # the node's Database, synchronously underneath
        def __init__(self, conn):
            self.conn = conn

        async def fetchone(self, query, params):
            return self.conn.execute(query, params).fetchone()

        async def fetch(self, query, params):
            return self.conn.execute(query, params).fetchall()

    (vm_id,), = demo.sql("SELECT id FROM vms WHERE name = 'desk'")
    with psycopg.connect(**demo.params, row_factory=dict_row, autocommit=True) as conn:
        store = VmStore(Db(conn), 0, demo.storage)
        spec, _ = asyncio.run(store.spec(vm_id))
        assert spec.image_trusted is False
        demo.sql("UPDATE dis SET trusted = true")
        spec, _ = asyncio.run(store.spec(vm_id))
        assert spec.image_trusted is True
