"""The VM network, shared by the LXC and KVM backends: a bridge (vm.network.bridge) that carries
the node's own address on the VM network, made with pyroute2; each VM gets a port on it (a
veth made by LXC, a tap made by libvirt) with a MAC derived from its IP, so a VM keeps its MAC
wherever it runs. Before the VM starts, its port (by name) gets the VM's own policy
(firewall.port_rules): only the VM's MAC and IP (ARP included) may leave it, so no VM can claim another's address
and receive its desktop stream. With vm.network.firewall.protect_vms the port is also
isolated: isolated ports reach the node but not each other.

Across nodes (issue 20): each node puts its own address on its bridge (its host's vm_address,
Config.vm_address; else vm.network.gateway; else the network's first address) and, with
vm.network.uplink, enslaves that interface to the bridge so that the nodes' VM networks are
one segment behind a switch. The bridge then stays up while the node runs (its L7R reaches
VMs on the other nodes through it) and its frames towards the uplink are filtered
(firewall.uplink_rules). A VM that starts on a node keeps the MAC it had on another: the
node's bridge may have learned it on its uplink, and port_up makes it forget that
(forget_elsewhere)."""
from __future__ import annotations

import ipaddress
import os

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.rtnl.ndmsg import NTF_MASTER

from .base import BackendError


def mac_for(ip: str) -> str:
    """Locally administered, unicast: 02:00 + the four bytes of the IPv4 address."""
    return "02:00:" + ":".join(f"{b:02x}" for b in ipaddress.IPv4Address(ip).packed)


def ip_from_mac(mac: str) -> str:
    """The inverse of mac_for: 02:00:a:b:c:d -> a.b.c.d."""
    return ".".join(str(int(part, 16)) for part in mac.split(":")[2:])


def node_mac(ip: str) -> str:
    """A bridge the node makes for an uplink has this MAC (06:00 + its address), never a VM's
    (02:00 + theirs): what comes in from the switch with a VM's MAC is another node's VM."""
    return "06:00:" + ":".join(f"{b:02x}" for b in ipaddress.IPv4Address(ip).packed)


def ensure_bridge(name: str, address: str, netmask: str, uplink: str = "") -> bool:
    """The bridge up with the node's address on it, and the uplink (if any) enslaved to it;
    nothing is routed out by this. True when it had to be made (an admin's own bridge is
    used as it is, never removed)."""
    prefix = ipaddress.IPv4Network(f"0.0.0.0/{netmask}").prefixlen
    try:
        with IPRoute() as ip:
            found = ip.link_lookup(ifname=name)
            _refuse_overlap(ip, name, found[0] if found else None,
                            ipaddress.IPv4Network(f"{address}/{prefix}", strict=False))
            made = not found
            if made:
                ip.link("add", ifname=name, kind="bridge",
                        **({"address": node_mac(address)} if uplink else {}))
                found = ip.link_lookup(ifname=name)
            index = found[0]
            if uplink:
                _enslave(ip, name, index, uplink)
            present = {(a.get_attr("IFA_ADDRESS"), a["prefixlen"])
                       for a in ip.get_addr(index=index)}
            if (address, prefix) not in present:
                ip.addr("add", index=index, address=address, prefixlen=prefix)
            ip.link("set", index=index, state="up")
    except NetlinkError as exc:
        raise BackendError(f"bridge {name}: {exc}") from None
    return made


def _enslave(ip: IPRoute, name: str, index: int, uplink: str) -> None:
    found = ip.link_lookup(ifname=uplink)
    if not found:
        raise BackendError(f"vm.network.uplink: there is no interface {uplink} on this node")
    if found[0] == index:
        raise BackendError(f"vm.network.uplink: {uplink} is the VM bridge itself")
    link = ip.get_links(found[0])[0]
    if link.get_attr("IFLA_MASTER") != index:
        ip.link("set", index=found[0], master=index)
    ip.link("set", index=found[0], state="up")


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
    return cfg.get("vm.network.bridge"), network, node_address(cfg)


def uplink_of(cfg) -> str:
    """vm.network.uplink, the interface that joins this node's VM network to the others' ('':
    none)."""
    return (cfg.get("vm.network.uplink") or "").strip()


def node_address(cfg) -> str:
    """The node's own address on the VM network (its bridge's, its VMs' gateway): its host's
    vm_address, else vm.network.gateway, else the network's first address."""
    start, netmask = cfg.get("vm.network.ip.start"), cfg.get("vm.network.netmask")
    network = ipaddress.IPv4Network(f"{start}/{netmask}", strict=False)
    return (getattr(cfg, "vm_address", None) or cfg.get("vm.network.gateway")
            or str(network.network_address + 1))


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
    use_dhcp = cfg.get_bool("vm.network.use_dhcp")
    # the bridge's tables and, in the same transaction, the port's policy: only the VM's own
    # MAC (mac_for(ip)) and IP may leave its port (and DHCP from 0.0.0.0)
    _bridge_and_tables(cfg, firewall.port_rules(bridge, port, mac_for(ip), ip, use_dhcp))
    if use_dhcp:
        dhcp.ensure_server(cfg.get("path.run"), cfg.get("path.log"), bridge, network, gateway)
        dhcp.add_lease(cfg.get("path.run"), bridge, vm_id, ip)


def _bridge_and_tables(cfg, extra: str = "") -> None:
    """The bridge (made if missing, the uplink enslaved) and its tables as the settings say
    now; a bad vm.network.allow or uplink name is refused before anything is made."""
    from . import firewall
    bridge, network, gateway = _network(cfg)
    allow = firewall.parse_allow(cfg.get("vm.network.allow"))
    uplink = uplink_of(cfg)
    if uplink:
        firewall.check_port_name(uplink, "vm.network.uplink")
    if ensure_bridge(bridge, gateway, str(network.netmask), uplink):
        os.makedirs(cfg.get("path.run"), exist_ok=True)
        open(_made_marker(cfg), "w").close()
    text = firewall.ruleset(bridge, str(network),
                            cfg.get_bool("vm.network.firewall.protect_host"),
                            cfg.get_bool("vm.network.firewall.nat"),
                            cfg.get_bool("vm.network.use_dhcp"),
                            cfg.get_bool("vm.network.firewall.protect_vms"), allow,
                            bool(uplink))
    if uplink:
        text += firewall.uplink_rules(bridge, uplink, (cfg.get_int("internal.vm.port.vma"),
                                                       cfg.get_int("internal.vm.port.x")))
    else:  # an uplink taken out of the settings takes its rules with it
        text += firewall.no_uplink(bridge)
    firewall.apply(text + extra)


def setup_node(cfg) -> None:
    """At the node's start, with vm.network.uplink: the bridge, its uplink and its tables
    now, VMs or not, so that the node's L7R reaches the VMs of the other nodes."""
    if uplink_of(cfg):
        _bridge_and_tables(cfg)


def port_up(cfg, port: str, ip: str | None = None) -> None:
    """Once the VM's port exists: isolated when VMs must not reach each other; with an
    uplink, the VM at `ip` no longer taken for one of another node (forget_elsewhere)."""
    if cfg.get_bool("vm.network.firewall.protect_vms"):
        isolate_port(port)
    uplink = uplink_of(cfg)
    if ip and uplink:
        forget_elsewhere(uplink, ip)


def forget_elsewhere(uplink: str, ip: str) -> None:
    """The VM at `ip` now runs behind this node, with the MAC it had wherever it ran before
    (mac_for(ip)): this node's bridge may have learned that MAC on its uplink (its L7R
    talked to the VM on another node) and would send the VM's frames out there until the
    entry ages out, minutes later, so that this node could not reach its own VM. The entry
    goes; the bridge learns the VM on its port from its first frame. The switch and the other
    nodes' bridges learn it from the VM's first broadcast (its ARP for its gateway, which
    crosses the uplink, firewall.uplink_rules) before the VM answers its node: before it
    runs."""
    with IPRoute() as ipr:
        found = ipr.link_lookup(ifname=uplink)
        if not found:
            raise BackendError(f"no uplink {uplink} (vm.network.uplink)")
        try:
            ipr.fdb("del", ifindex=found[0], lladdr=mac_for(ip), flags=NTF_MASTER)
        except NetlinkError:
            pass  # nothing learned there


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
    the bridge, if the node made it, go; the next VM's start makes them again. With an
    uplink the bridge and its tables stay: the node's L7R reaches other nodes' VMs by it."""
    from . import dhcp, firewall
    bridge, marker = cfg.get("vm.network.bridge"), _made_marker(cfg)
    dhcp.stop_server(cfg.get("path.run"), bridge)
    if uplink_of(cfg):
        return
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
