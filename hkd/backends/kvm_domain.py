"""Domain XML for a VM, from data only (OSF, DI, VM, node settings): no libvirt call here.

Memory from the OSF, vCPUs from the property vm.kvm.vcpus, the OS disk (a qcow2 overlay on
the DI, or the DI read-only), the persistent home disk, a virtio NIC on the VM bridge with the
VM's MAC, the serial console logged to a file, ACPI (so a shutdown request reaches the guest).
Images that boot a kernel directly (properties vm.kvm.kernel / vm.kvm.initrd) get the VM's
network on the kernel command line: qvd.ip=ADDRESS/PREFIX qvd.gw=GATEWAY qvd.vma_port=PORT, or
qvd.ip=dhcp with vm.network.use_dhcp (the node's dnsmasq then has a static lease for the VM's
MAC). Disk-booted images have no command line: they take their address by DHCP.

The agent's secret for this run travels as an SMBIOS OEM string (`qvd.vma_secret=...`, type 11),
not on the command line: inside the guest /proc/cmdline is everyone's, the DMI table only
root's (/sys/firmware/dmi/entries/11-0/raw is 0400).
"""
from __future__ import annotations

from dataclasses import dataclass
from xml.sax.saxutils import quoteattr

from .base import VmSpec
from .bridge import mac_for


@dataclass
class DomainPlan:
    name: str
    domain_type: str            # 'kvm' or 'qemu' (TCG)
    os_disk: str
    os_disk_readonly: bool
    home_disk: str | None
    bridge: str
    tap: str
    console_log: str
    prefix: int
    gateway: str
    vma_port: int
    use_dhcp: bool = False
    secret: str = ""


def domain_name(vm_id: int) -> str:
    return f"qvd-{vm_id}"


def _disk(path: str, target: str, readonly: bool) -> str:
    return (f"    <disk type='file' device='disk'>\n"
            f"      <driver name='qemu' type='qcow2'/>\n"
            f"      <source file={quoteattr(path)}/>\n"
            f"      <target dev='{target}' bus='virtio'/>\n"
            f"{'      <readonly/>' + chr(10) if readonly else ''}"
            f"    </disk>\n")


def domain_xml(vm: VmSpec, plan: DomainPlan) -> str:
    props = vm.properties
    vcpus = int(props.get("vm.kvm.vcpus") or 1)
    kernel, initrd = props.get("vm.kvm.kernel"), props.get("vm.kvm.initrd")
    boot = "      <boot dev='hd'/>\n"
    if kernel:
        cmdline = " ".join(filter(None, [
            props.get("vm.kvm.cmdline", "console=ttyS0"),
            *(["qvd.ip=dhcp"] if plan.use_dhcp else
              [f"qvd.ip={vm.ip}/{plan.prefix}", f"qvd.gw={plan.gateway}"]),
            f"qvd.vma_port={plan.vma_port}"]))
        boot = (f"      <kernel>{_text(kernel)}</kernel>\n"
                + (f"      <initrd>{_text(initrd)}</initrd>\n" if initrd else "")
                + f"      <cmdline>{_text(cmdline)}</cmdline>\n")
    disks = _disk(plan.os_disk, "vda", plan.os_disk_readonly)
    if plan.home_disk:
        disks += _disk(plan.home_disk, "vdb", False)
    return f"""<domain type='{plan.domain_type}'>
  <name>{plan.name}</name>
  <memory unit='MiB'>{vm.memory}</memory>
  <vcpu>{vcpus}</vcpu>
  <sysinfo type='smbios'>
    <oemStrings>
      <entry>qvd.vma_secret={_text(plan.secret)}</entry>
    </oemStrings>
  </sysinfo>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
{boot}    <smbios mode='sysinfo'/>
  </os>
  <features><acpi/><apic/></features>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>restart</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
{disks}    <interface type='bridge'>
      <source bridge={quoteattr(plan.bridge)}/>
      <mac address='{mac_for(vm.ip)}'/>
      <target dev={quoteattr(plan.tap)}/>
      <model type='virtio'/>
    </interface>
    <serial type='file'>
      <source path={quoteattr(plan.console_log)}/>
      <target port='0'/>
    </serial>
    <memballoon model='none'/>
  </devices>
</domain>
"""


def _text(value: str) -> str:
    return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
