"""A libvirtd for the KVM tests: the running one, or one started here (with virtlogd), each
under tests/subreaper.py so that the qemu processes it daemonizes get reaped; stopped by PID."""
import contextlib
import os
import shutil
import socket
import subprocess
import sys

import pytest

from hkd_nodes import wait_for
from qvd.hkd.pidfile import end_child

SOCKET = "/run/libvirt/libvirt-sock"
SUBREAPER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "subreaper.py")


def _answers() -> bool:
    try:
        with socket.socket(socket.AF_UNIX) as probe:
            probe.connect(SOCKET)
        return True
    except OSError:
        return False


@contextlib.contextmanager
def running(log_dir: str):
    """The running libvirtd, or one started here (virtlogd too) until the block ends."""
    started = []
    if not _answers():
        for daemon in ("virtlogd", "libvirtd"):
            with open(os.path.join(log_dir, f"{daemon}.log"), "ab") as log:
                started.append(subprocess.Popen([sys.executable, SUBREAPER, daemon],
                                                stdout=log, stderr=log,
                                                stdin=subprocess.DEVNULL))
        wait_for(_answers, 30, "libvirtd to answer")
    try:
        yield "qemu:///system"
    finally:
        for proc in reversed(started):
            end_child(proc, 30)


@pytest.fixture(scope="session")
def libvirtd(tmp_path_factory):
    if os.geteuid() != 0 or not shutil.which("libvirtd"):
        if os.environ.get("CI"):
            pytest.fail("libvirtd is not installed (scripts/install-deps.sh installs it)")
        pytest.skip("the KVM tests need root and libvirtd")
    with running(str(tmp_path_factory.mktemp("libvirtd"))) as uri:
        yield uri
