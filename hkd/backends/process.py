"""The `process` backend: each VM is a qvd-vma process on 127.0.0.1 (development, demos, tests).

Per VM: a working directory as its disk (<storage>/process/<vm>, the DI unpacked into it,
discarded at cleanup), a persistent home (<storage>/homes/<vm>), and a record
(<run>/process/<vm>.json: pid, start time, ports) so that a restarted HKD and the watchdog
find the VM again. VMs run in their own session: they survive the HKD.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tarfile

from qvd.vma import secret

from .base import Backend, BackendError, VmAddress, VmSpec
from .procfs import alive, signal_group, start_time


def free_port() -> int:
    """A free TCP port on 127.0.0.1 (the OS picks it)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class ProcessBackend(Backend):
    name = "process"

    def __init__(self, storage_root: str, run_dir: str):
        self.disks = os.path.join(storage_root, "process")
        self.homes = os.path.join(storage_root, "homes")
        self.records = os.path.join(run_dir, "process")
        self._children: dict[int, subprocess.Popen] = {}

    # --- records --------------------------------------------------------------------------
    def _record_path(self, vm_id: int) -> str:
        return os.path.join(self.records, f"{vm_id}.json")

    def _read(self, vm_id: int) -> dict | None:
        try:
            with open(self._record_path(vm_id), encoding="utf-8") as handle:
                return json.load(handle)
        except (FileNotFoundError, ValueError):
            return None

    def _write(self, vm_id: int, record: dict) -> None:
        os.makedirs(self.records, exist_ok=True)
        partial = self._record_path(vm_id) + ".tmp"
        with open(partial, "w", encoding="utf-8") as handle:
            json.dump(record, handle)
        os.replace(partial, self._record_path(vm_id))

    def _running_pid(self, vm_id: int) -> int | None:
        record = self._read(vm_id)
        if not record or "pid" not in record:
            return None
        child = self._children.get(vm_id)
        if child is not None and child.poll() is not None:  # reap our own children
            self._children.pop(vm_id, None)
        return record["pid"] if alive(record["pid"], record.get("started")) else None

    # --- the interface ----------------------------------------------------------------------
    async def prepare(self, vm: VmSpec) -> VmAddress:
        disk = os.path.join(self.disks, str(vm.vm_id))
        shutil.rmtree(disk, ignore_errors=True)
        os.makedirs(disk, mode=0o700)
        os.makedirs(os.path.join(self.homes, str(vm.vm_id)), exist_ok=True)
        if not os.path.isfile(vm.image):
            raise BackendError(f"image {vm.image} not found on this node")
        if tarfile.is_tarfile(vm.image):
            with tarfile.open(vm.image) as tar:
                tar.extractall(disk, filter="data")
        address = VmAddress("127.0.0.1", free_port(), free_port())
        self._write(vm.vm_id, {"vma_port": address.vma_port, "x_port": address.x_port})
        return address

    async def start(self, vm: VmSpec) -> int | None:
        record = self._read(vm.vm_id)
        if record is None:
            raise BackendError("start before prepare")
        disk = os.path.join(self.disks, str(vm.vm_id))
        env = dict(os.environ, HOME=os.path.join(self.homes, str(vm.vm_id)), QVD_VM_ID=str(vm.vm_id))
        secret_file = os.path.join(disk, "vma.secret")
        secret.write_file(secret_file, vm.vma_secret, os.getuid(), os.getgid())
        with open(os.path.join(disk, "vma.log"), "ab") as log:
            child = subprocess.Popen(
                [sys.executable, "-m", "qvd.vma.main", "--address", "127.0.0.1",
                 "--port", str(record["vma_port"]), "--x-port", str(record["x_port"]),
                 "--secret-file", secret_file],
                cwd=disk, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                start_new_session=True)
        self._children[vm.vm_id] = child
        record.update(pid=child.pid, started=start_time(child.pid))
        self._write(vm.vm_id, record)
        return child.pid

    async def stop(self, vm_id: int) -> None:
        pid = self._running_pid(vm_id)
        if pid is not None:
            signal_group(pid, signal.SIGTERM)

    async def kill(self, vm_id: int) -> None:
        pid = self._running_pid(vm_id)
        if pid is not None:
            signal_group(pid, signal.SIGKILL)

    async def state(self, vm_id: int) -> str:
        return "running" if self._running_pid(vm_id) is not None else "stopped"

    async def list(self) -> dict[int, VmAddress | None]:
        found = {}
        if os.path.isdir(self.records):
            for name in os.listdir(self.records):
                if name.endswith(".json") and name[:-5].isdigit():
                    vm_id = int(name[:-5])
                    if self._running_pid(vm_id) is not None:
                        record = self._read(vm_id)
                        found[vm_id] = VmAddress("127.0.0.1", record["vma_port"],
                                                 record["x_port"])
        return found

    async def cleanup(self, vm_id: int) -> None:
        if self._running_pid(vm_id) is not None:
            raise BackendError("the VM process is still running")
        shutil.rmtree(os.path.join(self.disks, str(vm_id)), ignore_errors=True)
        try:
            os.unlink(self._record_path(vm_id))
        except FileNotFoundError:
            pass

    async def discard_home(self, vm_id: int) -> None:
        shutil.rmtree(os.path.join(self.homes, str(vm_id)), ignore_errors=True)

    def kill_all(self) -> list[int]:
        killed = []
        if os.path.isdir(self.records):
            for name in os.listdir(self.records):
                record = self._read(int(name[:-5])) if name[:-5].isdigit() else None
                if record and "pid" in record and alive(record["pid"], record.get("started")):
                    signal_group(record["pid"], signal.SIGKILL)
                    killed.append(int(name[:-5]))
        return killed
