"""Does KVM really run guests here? /dev/kvm can exist while guests never run (nested or
restricted hosts). The probe makes a VM with one vCPU, runs a one-byte program (HLT) in real
mode and expects the HLT exit. Run it in a subprocess with a timeout: a broken KVM may hang.

    python -m qvd.hkd.backends.kvm_probe   # exit status 0: KVM works
"""
from __future__ import annotations

import ctypes
import fcntl
import mmap
import os
import struct
import subprocess
import sys

KVM_GET_API_VERSION, KVM_CREATE_VM, KVM_GET_VCPU_MMAP_SIZE = 0xAE00, 0xAE01, 0xAE04
KVM_CREATE_VCPU, KVM_RUN = 0xAE41, 0xAE80
KVM_SET_USER_MEMORY_REGION = 0x4020AE46
KVM_GET_SREGS, KVM_SET_SREGS = 0x8138AE83, 0x4138AE84
KVM_GET_REGS, KVM_SET_REGS = 0x8090AE81, 0x4090AE82
KVM_EXIT_HLT = 5
GUEST_ADDRESS = 0x1000


def probe() -> bool:
    kvm = os.open("/dev/kvm", os.O_RDWR | os.O_CLOEXEC)
    try:
        if fcntl.ioctl(kvm, KVM_GET_API_VERSION) != 12:
            return False
        vm = fcntl.ioctl(kvm, KVM_CREATE_VM, 0)
        memory = mmap.mmap(-1, 0x1000)
        memory.write(b"\xf4")  # hlt
        address = ctypes.addressof(ctypes.c_char.from_buffer(memory))
        region = struct.pack("IIQQQ", 0, 0, GUEST_ADDRESS, 0x1000, address)
        fcntl.ioctl(vm, KVM_SET_USER_MEMORY_REGION, region)
        vcpu = fcntl.ioctl(vm, KVM_CREATE_VCPU, 0)
        sregs = bytearray(312)
        fcntl.ioctl(vcpu, KVM_GET_SREGS, sregs)
        struct.pack_into("Q", sregs, 0, 0)   # cs.base = 0
        struct.pack_into("H", sregs, 12, 0)  # cs.selector = 0
        fcntl.ioctl(vcpu, KVM_SET_SREGS, bytes(sregs))
        regs = bytearray(144)
        struct.pack_into("QQ", regs, 128, GUEST_ADDRESS, 2)  # rip, rflags
        fcntl.ioctl(vcpu, KVM_SET_REGS, bytes(regs))
        size = fcntl.ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE)
        run = mmap.mmap(vcpu, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        fcntl.ioctl(vcpu, KVM_RUN)
        return struct.unpack_from("I", run, 8)[0] == KVM_EXIT_HLT
    except OSError:
        return False
    finally:
        os.close(kvm)


def kvm_runs_guests(timeout: float = 5.0) -> bool:
    if not os.path.exists("/dev/kvm"):
        return False
    try:
        return subprocess.run([sys.executable, "-m", __spec__.name], timeout=timeout,
                              capture_output=True).returncode == 0
    except subprocess.TimeoutExpired:
        return False


if __name__ == "__main__":
    sys.exit(0 if probe() else 1)
