"""The VM network, shared by the LXC and KVM backends: a bridge (vm.network.bridge) that carries
the node's own address on the VM network, made with pyroute2; each VM gets a port on it (a
veth made by LXC, a tap made by libvirt) with a MAC derived from its IP, so a VM keeps its MAC
wherever it runs. Before the VM starts, its port (by name) gets the VM's own policy
(firewall.port_rules): only the VM's MAC and IP (ARP included) may leave it, so no VM can claim another's address
and receive its desktop stream. With vm.network.firewall.protect_vms the port is also
isolated: isolated ports reach the node but not each other."""
from __future__ import annotations

import ipaddress
import os

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from .base import BackendError


def mac_for(ip: str) -> str:
    """Locally administered, unicast: 02:00 + the four bytes of the IPv4 address."""
    return "02:00:" + ":".join(f"{b:02x}" for b in ipaddress.IPv4Address(ip).packed)


def ip_from_mac(mac: str) -> str:
    """The inverse of mac_for: 02:00:a:b:c:d -> a.b.c.d."""
    return ".".join(str(int(part, 16)) for part in mac.split(":")[2:])


def ensure_bridge(name: str, address: str, netmask: str) -> bool:
    """The bridge up with the node's address on it; nothing is routed out by this.
    True when it had to be made (an admin's own bridge is used as it is, never removed)."""
    prefix = ipaddress.IPv4Network(f"0.0.0.0/{netmask}").prefixlen
    try:
        with IPRoute() as ip:
            found = ip.link_lookup(ifname=name)
            _refuse_overlap(ip, name, found[0] if found else None,
                            ipaddress.IPv4Network(f"{address}/{prefix}", strict=False))
            made = not found
            if made:
                ip.link("add", ifname=name, kind="bridge")
                found = ip.link_lookup(ifname=name)
            index = found[0]
            present = {(a.get_attr("IFA_ADDRESS"), a["prefixlen"])
                       for a in ip.get_addr(index=index)}
            if (address, prefix) not in present:
                ip.addr("add", index=index, address=address, prefixlen=prefix)
            ip.link("set", index=index, state="up")
    except NetlinkError as exc:
        raise BackendError(f"bridge {name}: {exc}") from None
    return made


def _refuse_overlap(ip: IPRoute, name: str, index: int | None,
                    network: ipaddress.IPv4Network) -> None:
    """Another link on the VM network (a bridge left by a crashed test, a second setup) takes
    the route to the VMs: nothing would answer them, so say where the clash is instead."""
    for addr in ip.get_addr(family=2):
        if addr["index"] == index:
            continue
        other = ipaddress.IPv4Network(f"{addr.get_attr('IFA_ADDRESS')}/{addr['prefixlen']}",
                                      strict=False)
        if other.overlaps(network):
            link = ip.get_links(addr["index"])[0].get_attr("IFLA_IFNAME")
            raise BackendError(f"the VM network {network} is also on {link} "
                               f"({addr.get_attr('IFA_ADDRESS')}/{addr['prefixlen']}): VMs on "
                               f"{name} would be unreachable; remove that address or choose "
                               "another vm.network.ip.start")


def isolate_port(port: str, isolated: bool = True) -> None:
    try:
        with IPRoute() as ip:
            found = ip.link_lookup(ifname=port)
            if not found:
                raise BackendError(f"no network port {port} to isolate")
            ip.brport("set", index=found[0], isolated=int(isolated))
    except NetlinkError as exc:
        raise BackendError(f"port {port}: {exc}") from None


def _network(cfg) -> tuple[str, ipaddress.IPv4Network, str]:
    """(bridge, VM network, the node's address on it) from the node's settings."""
    start, netmask = cfg.get("vm.network.ip.start"), cfg.get("vm.network.netmask")
    network = ipaddress.IPv4Network(f"{start}/{netmask}", strict=False)
    gateway = cfg.get("vm.network.gateway") or str(network.network_address + 1)
    return cfg.get("vm.network.bridge"), network, gateway


def plan(cfg) -> tuple[str, int, str]:
    """(bridge, prefix, gateway) without touching anything."""
    bridge, network, gateway = _network(cfg)
    return bridge, network.prefixlen, gateway


def attach_vm(cfg, vm_id: int, ip: str, port: str) -> None:
    """Before a VM starts: the bridge and its firewall as the settings say now, the policy of
    the VM's port (veth or tap, by name: in force from the port's first frame on) and the VM's
    DHCP lease when addresses come from DHCP. A bad vm.network.allow is refused before
    anything is made."""
    from . import dhcp, firewall
    bridge, network, gateway = _network(cfg)
    allow = firewall.parse_allow(cfg.get("vm.network.allow"))
    if ensure_bridge(bridge, gateway, str(network.netmask)):
        os.makedirs(cfg.get("path.run"), exist_ok=True)
        open(_made_marker(cfg), "w").close()
    use_dhcp = cfg.get_bool("vm.network.use_dhcp")
    # the bridge's tables and, in the same transaction, the port's policy: only the VM's own
    # MAC (mac_for(ip)) and IP may leave its port (and DHCP from 0.0.0.0)
    firewall.apply(firewall.ruleset(bridge, str(network),
                                    cfg.get_bool("vm.network.firewall.protect_host"),
                                    cfg.get_bool("vm.network.firewall.nat"), use_dhcp,
                                    cfg.get_bool("vm.network.firewall.protect_vms"), allow)
                   + firewall.port_rules(bridge, port, mac_for(ip), ip, use_dhcp))
    if use_dhcp:
        dhcp.ensure_server(cfg.get("path.run"), cfg.get("path.log"), bridge, network, gateway)
        dhcp.add_lease(cfg.get("path.run"), bridge, vm_id, ip)


def port_up(cfg, port: str) -> None:
    """Once the VM's port exists: isolated when VMs must not reach each other."""
    if cfg.get_bool("vm.network.firewall.protect_vms"):
        isolate_port(port)


def port_down(cfg, port: str) -> None:
    """The port's policy goes (the port itself goes with its VM)."""
    from . import firewall
    firewall.unregister_port(cfg.get("vm.network.bridge"), port)


def detach_vm(cfg, vm_id: int, port: str | None = None) -> None:
    """After a VM stopped: its port's policy (port: its tap; by default the LXC veth,
    veth_name(vm_id)) and its DHCP lease (there is none without DHCP) go."""
    from . import dhcp
    port_down(cfg, port or veth_name(vm_id))
    dhcp.remove_lease(cfg.get("path.run"), cfg.get("vm.network.bridge"), vm_id)


def release(cfg) -> None:
    """No VM of the node runs any more (a clean stop): its DHCP server, firewall tables and
    the bridge, if the node made it, go; the next VM's start makes them again."""
    from . import dhcp, firewall
    bridge, marker = cfg.get("vm.network.bridge"), _made_marker(cfg)
    dhcp.stop_server(cfg.get("path.run"), bridge)
    firewall.remove(bridge)
    if os.path.exists(marker):
        remove_bridge(bridge)
        os.unlink(marker)


def _made_marker(cfg) -> str:
    return os.path.join(cfg.get("path.run"), f"bridge-{cfg.get('vm.network.bridge')}.made")


def remove_bridge(name: str) -> None:
    with IPRoute() as ip:
        found = ip.link_lookup(ifname=name)
        if found:
            ip.link("del", index=found[0])


def veth_name(vm_id: int) -> str:
    return f"qvd{vm_id}"  # the host side of the VM's veth (15 characters at most)


def link_exists(name: str) -> bool:
    with IPRoute() as ip:
        return bool(ip.link_lookup(ifname=name))
