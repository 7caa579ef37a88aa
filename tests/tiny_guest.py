"""A tiny KVM/QEMU guest made in the test: Debian's cloud kernel (downloaded as a .deb by apt,
cached) and a busybox initramfs whose init brings up the virtio NIC with the address from the
kernel command line (or by DHCP, with the agent's own udhcpc script) and answers the agent's
ping and poweroff on the VMA port, to callers with the node's secret only (it reads it from the
SMBIOS OEM strings, as a real agent would)."""
import glob
import os
import shutil
import subprocess
import tempfile

from qvd.vma import dhcp  # the agent's own udhcpc script configures the guest too

CACHE = "/var/cache/qvd-tests/kernel"
MODULES = ["kernel/drivers/virtio/virtio.ko", "kernel/drivers/virtio/virtio_ring.ko",
           "kernel/drivers/virtio/virtio_pci_modern_dev.ko",
           "kernel/drivers/virtio/virtio_pci_legacy_dev.ko",
           "kernel/drivers/virtio/virtio_pci.ko", "kernel/net/core/failover.ko",
           "kernel/drivers/net/net_failover.ko", "kernel/drivers/net/virtio_net.ko"]

INIT = r"""#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
for m in /lib/modules/*.ko; do insmod $m; done
for word in $(cat /proc/cmdline); do
  case $word in qvd.ip=*) IP=${word#qvd.ip=};; qvd.gw=*) GW=${word#qvd.gw=};;
                qvd.vma_port=*) PORT=${word#qvd.vma_port=};; esac
done
tr '\000' '\n' < /sys/firmware/dmi/entries/11-0/raw | sed -n 's/.*qvd.vma_secret=//p' > /secret
chmod 400 /secret
ip link set lo up; ip link set eth0 up
if [ "$IP" = dhcp ]; then
  udhcpc -i eth0 -q -n -t 10 -s /udhcpc.sh
else
  ip addr add $IP dev eth0
  [ -n "$GW" ] && ip route add default via $GW
fi
echo "tiny guest: eth0 $IP, agent on port $PORT"
nc -ll -p ${PORT:-3030} -e /vma.sh &
while true; do sleep 3600; done
"""

VMA = r"""#!/bin/busybox sh
read method path version
cr=$(printf '\r')
offered=
while read -r line; do  # all of the request: unread bytes at close would turn FIN into RST
  [ -z "$line" -o "$line" = "$cr" ] && break
  case $line in "Authorization: Bearer "*) offered=${line#Authorization: Bearer }; offered=${offered%$cr};; esac
done
answer() { printf 'HTTP/1.1 %s\r\nContent-Type: application/json\r\nContent-Length: %s\r\nConnection: close\r\n\r\n%s' "$1" "${#2}" "$2"; }
if [ -z "$offered" ] || [ "$offered" != "$(cat /secret)" ]; then
  answer "401 Unauthorized" '{"error": "this agent answers its node only"}'; exit 0
fi
case $path in
  /vma/ping*) answer "200 OK" '{"status": "ok"}';;
  /vma/x_state*) answer "200 OK" '{"x_state": "stopped"}';;
  /vma/poweroff*) answer "200 OK" '{"status": "ok"}'; (sleep 1; poweroff -f) &;;
  *) answer "404 Not Found" '{"error": "unknown method"}';;
esac
"""


def _cpio(root: str, out: str) -> None:
    names = subprocess.run(["find", "."], cwd=root, capture_output=True, text=True,
                           check=True).stdout
    with open(out, "wb") as handle:  # busybox's cpio: the guest's busybox is there anyway
        subprocess.run(["busybox", "cpio", "-o", "-H", "newc"], cwd=root, input=names.encode(),
                       stdout=handle, stderr=subprocess.DEVNULL, check=True)


def kernel_package() -> str:
    """The cloud kernel's files, extracted once into the cache."""
    found = glob.glob(os.path.join(CACHE, "x", "boot", "vmlinuz-*"))
    if found:
        return os.path.join(CACHE, "x")
    os.makedirs(CACHE, exist_ok=True)
    depends = subprocess.run(["apt-cache", "depends", "linux-image-cloud-amd64"],
                             capture_output=True, text=True, check=True).stdout
    package = next(line.split()[-1] for line in depends.splitlines()
                   if "Depends: linux-image-" in line)
    subprocess.run(["apt-get", "download", package], cwd=CACHE, check=True, capture_output=True)
    deb = glob.glob(os.path.join(CACHE, "*.deb"))[0]
    subprocess.run(["dpkg-deb", "-x", deb, os.path.join(CACHE, "x")], check=True)
    os.unlink(deb)
    return os.path.join(CACHE, "x")


def _depends(path: str) -> list[str]:
    with open(path, "rb") as handle:
        data = handle.read()
    start = data.find(b"depends=")
    value = data[start + 8:data.index(b"\0", start)].decode() if start >= 0 else ""
    return [name for name in value.split(",") if name]


def _load_order(modules_dir: str) -> list[str]:
    """MODULES and what they depend on, dependencies first."""
    by_name = {os.path.basename(m)[:-3].replace("-", "_"): os.path.join(modules_dir, m)
               for m in MODULES}
    order: list[str] = []

    def visit(name):
        path = by_name[name]
        if path not in order:
            for dependency in _depends(path):
                visit(dependency)
            order.append(path)
    for name in by_name:
        visit(name)
    return order


def build(directory: str) -> tuple[str, str]:
    """(kernel path, initramfs path) in directory."""
    package = kernel_package()
    kernel = os.path.join(directory, "vmlinuz")
    shutil.copy(glob.glob(os.path.join(package, "boot", "vmlinuz-*"))[0], kernel)
    modules = glob.glob(os.path.join(package, "lib", "modules", "*"))[0]
    with tempfile.TemporaryDirectory() as root:
        for sub in ("bin", "proc", "sys", "dev", "lib/modules", "tmp"):
            os.makedirs(os.path.join(root, sub))
        shutil.copy(shutil.which("busybox") or "/bin/busybox", os.path.join(root, "bin"))
        for number, module in enumerate(_load_order(modules)):  # numbered: init loads in order
            shutil.copy(module, os.path.join(root, "lib/modules",
                                             f"{number:02d}-{os.path.basename(module)}"))
        for name, text in (("init", INIT), ("vma.sh", VMA), ("udhcpc.sh", dhcp.SCRIPT)):
            with open(os.path.join(root, name), "w", encoding="ascii") as handle:
                handle.write(text)
            os.chmod(os.path.join(root, name), 0o755)
        initrd = os.path.join(directory, "initrd.cpio")
        _cpio(root, initrd)
    return kernel, initrd
