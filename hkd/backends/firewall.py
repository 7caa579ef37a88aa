"""Firewall rules for the VM bridge (nftables), two tables per bridge.

`table inet qvd_<bridge>`, replaced whole each time a VM is prepared:

- protect_host: VMs cannot open connections to the node (answers to connections the node
  opened, such as the L7R's and the HKD's, still flow);
- forward: what comes in on the bridge and is routed elsewhere (the node's other networks: the
  database, LDAP, other nodes) is dropped unless its destination is in vm.network.allow
  (parse_allow); answers to connections opened from elsewhere still flow. With protect_vms,
  traffic routed from the bridge back onto it (one VM to another through the node) is dropped
  too;
- nat: VM traffic leaving by another interface is masqueraded (off unless configured: nothing
  leaves the machine unless an admin wants it to).

`table bridge qvd_<bridge>_ports`, the per-port policy: a verdict map `ports` (port name ->
jump to the port's own chain) consulted at the bridge's prerouting hook, so it covers every
frame a VM sends, to the node as well as to other ports. A port's chain lets through only
frames from the port's own MAC: IPv4 from its own address (and DHCP from 0.0.0.0, udp 68 -> 67,
with vm.network.use_dhcp), ARP whose sender addresses are its own (or an address probe from
0.0.0.0); everything else (another VM's address, a forged MAC, IPv6, VLAN tags) is dropped.
A VM's port is added with one element and one chain (port_rules, applied with the rest by
bridge.attach_vm) and removed the same way (unregister_port); the prepare-time rewrite refreshes the table's own chain only, never the
ports' entries, so it loses none.

`table bridge qvd_<bridge>_uplink`, with vm.network.uplink only (uplink_rules), replaced whole
with the first table: the bridge is then one segment with the other nodes' bridges, and
frames bridged between a VM's port and the uplink are filtered at the bridge's forward hook
(this kernel's bridge family may have no conntrack, so the rules are stateless). Out towards
the uplink a VM may send ARP (its own, the port's chain says) and TCP answers from the agent's
and the desktop's ports (no SYN: it cannot open a connection, to a node, another node's VM or
the outside); in from the uplink only ARP and TCP to those two ports reach a VM (the L7Rs and
HKDs of the other nodes), and nothing from a VM's MAC (02:00, another node's VM). What a VM
sends to the node itself is the inet table's (protect_host), on every node.

protect_vms is otherwise not here: each VM's bridge port is isolated instead
(bridge.isolate_port), which keeps VMs apart on exactly this bridge.
"""
from __future__ import annotations

import ipaddress
import re
import subprocess
from typing import NamedTuple

from .base import BackendError

ALLOW_FORM = "comma-separated networks or addresses with an optional port, e.g. " \
             "10.1.0.0/16, 10.2.0.5:443/tcp"
_ALLOW_ITEM = re.compile(r"(?P<net>[^:/\s]+(?:/[^:\s]*)?)"
                         r"(?::(?P<port>[^:/\s]*)(?:/(?P<proto>\S*))?)?")
_PORT_NAME = re.compile(r"[A-Za-z0-9_.-]{1,15}")


class Allowed(NamedTuple):
    """One entry of vm.network.allow: a network, and a port (tcp and udp unless proto says)."""
    network: ipaddress.IPv4Network
    port: int | None = None
    proto: str | None = None

    def rule(self, bridge: str) -> str:
        net = self.network
        where = net.network_address if net.prefixlen == 32 else net
        match = f'iifname "{bridge}" oifname != "{bridge}" ip daddr {where}'
        if self.port is None:
            return f"{match} accept"
        if self.proto is None:
            return f"{match} meta l4proto {{ tcp, udp }} th dport {self.port} accept"
        return f"{match} {self.proto} dport {self.port} accept"


def parse_allow(text: str | None) -> list[Allowed]:
    """vm.network.allow: `10.1.0.0/16, 10.2.0.5:443/tcp` (empty: nothing). A bad entry is a
    BackendError that says which one and what is expected."""
    allowed = []
    for item in (text or "").split(","):
        item = item.strip()
        if not item:
            continue
        found = _ALLOW_ITEM.fullmatch(item)
        if found is None and _is_ipv6(item):
            raise BackendError(f"vm.network.allow: '{item}' is IPv6; VMs have IPv4 only "
                               f"({ALLOW_FORM})")
        if found is None:
            raise BackendError(f"vm.network.allow: '{item}' is not a network or an address "
                               f"({ALLOW_FORM})")
        try:
            network = ipaddress.IPv4Network(found["net"])
        except ipaddress.NetmaskValueError:
            raise BackendError(f"vm.network.allow: '{found['net']}' has a bad prefix length "
                               f"({ALLOW_FORM})") from None
        except ValueError as exc:
            if "host bits set" in str(exc):
                net = ipaddress.IPv4Network(found["net"], strict=False)
                raise BackendError(f"vm.network.allow: '{found['net']}' has host bits set "
                                   f"(did you mean {net}?)") from None
            raise BackendError(f"vm.network.allow: '{found['net']}' is not an IPv4 network "
                               f"or address ({ALLOW_FORM})") from None
        port, proto = found["port"], found["proto"]
        if port is not None and not (port.isdigit() and 1 <= int(port) <= 65535):
            raise BackendError(f"vm.network.allow: '{item}' has a bad port '{port}' "
                               "(1 to 65535)")
        if proto is not None and proto.lower() not in ("tcp", "udp"):
            raise BackendError(f"vm.network.allow: '{item}' has a bad protocol '{proto}' "
                               "(tcp or udp)")
        allowed.append(Allowed(network, int(port) if port is not None else None,
                               proto.lower() if proto is not None else None))
    return allowed


def _is_ipv6(text: str) -> bool:
    try:
        return ipaddress.ip_network(text, strict=False).version == 6
    except ValueError:
        return False


def ports_table(bridge: str) -> str:
    return f"qvd_{bridge}_ports"


def _ports_table_text(bridge: str) -> str:
    """The per-port table made if missing and its hook chain refreshed; the ports' map
    elements and chains are left as they are."""
    table = ports_table(bridge)
    return "\n".join([
        f"table bridge {table} {{",
        "  map ports { type ifname : verdict; }",
        "  chain prerouting { type filter hook prerouting priority -200; policy accept; }",
        "}",
        f"flush chain bridge {table} prerouting",
        f"add rule bridge {table} prerouting iifname vmap @ports"]) + "\n"


def ruleset(bridge: str, network: str, protect_host: bool, nat: bool,
            dhcp: bool = False, protect_vms: bool = True,
            allow: list[Allowed] | tuple = (), uplink: bool = False) -> str:
    table = f"qvd_{bridge}"
    inet = [f'iifname "{bridge}" ct state established,related accept']
    if dhcp:  # the node's dnsmasq gives the VMs their addresses
        inet.append(f'iifname "{bridge}" udp dport 67 accept')
    if protect_host:
        inet.append(f'iifname "{bridge}" drop')
    forward = [f'iifname "{bridge}" ct state established,related accept']
    if uplink:  # bridged between a VM and the uplink, and let through by the uplink table
        forward.append(f'iifname "{bridge}" oifname "{bridge}" '
                       f'meta mark & {BRIDGED:#x} == {BRIDGED:#x} accept')
    if not protect_vms:  # bridged (br_netfilter) or routed between VMs: theirs to decide
        forward.append(f'iifname "{bridge}" oifname "{bridge}" accept')
    forward += [entry.rule(bridge) for entry in allow]
    forward.append(f'iifname "{bridge}" drop')
    lines = [f"table inet {table}", f"delete table inet {table}",
             f"table inet {table} {{",
             "  chain input {", "    type filter hook input priority 0; policy accept;",
             *(f"    {rule}" for rule in inet), "  }",
             "  chain forward {", "    type filter hook forward priority 0; policy accept;",
             *(f"    {rule}" for rule in forward), "  }"]
    if nat:
        lines += ["  chain postrouting {", "    type nat hook postrouting priority 100;",
                  f'    ip saddr {network} oifname != "{bridge}" masquerade', "  }"]
    lines.append("}")
    return "\n".join(lines) + "\n" + _ports_table_text(bridge)


def _port_chain(port: str) -> str:
    check_port_name(port)
    return f"port_{port}"


def check_port_name(port: str, what: str = "") -> str:
    if not _PORT_NAME.fullmatch(port):
        where = f"{what}: " if what else ""
        raise BackendError(f"{where}'{port}' is not a network port name this firewall can "
                           "hold (letters, digits, '.', '_', '-'; 15 at most)")
    return port


# The uplink table's mark on the frames it lets cross between a VM's port and the uplink: with
# br_netfilter (bridge-nf-call-iptables, loaded by Docker, LXC setups...) bridged IPv4 also
# goes through the inet table's forward chain, whose `iifname <bridge> drop` would drop it.
BRIDGED = 0x01000000


def uplink_table(bridge: str) -> str:
    return f"qvd_{bridge}_uplink"


def uplink_rules(bridge: str, uplink: str, vm_ports: tuple[int, ...]) -> str:
    """The uplink's table, replaced whole: what may cross between the VMs' ports and the
    uplink (module docstring)."""
    table, ports = uplink_table(bridge), ", ".join(str(p) for p in vm_ports)
    uplink = check_port_name(uplink, "vm.network.uplink")
    return "\n".join([
        f"table bridge {table}", f"delete table bridge {table}",
        f"table bridge {table} {{",
        # before br_netfilter's own forward hook (-1), which runs the inet table's
        "  chain forward {", "    type filter hook forward priority -200; policy accept;",
        f'    iifname != "{uplink}" oifname "{uplink}" jump from_vms',
        f'    iifname "{uplink}" oifname != "{uplink}" jump to_vms', "  }",
        "  chain from_vms {",
        "    ether type arp accept",
        f"    ether type ip tcp sport {{ {ports} }} tcp flags & (syn | ack) != syn "
        f"meta mark set meta mark | {BRIDGED:#x} accept",
        "    drop", "  }",
        "  chain to_vms {",
        "    ether saddr & ff:ff:00:00:00:00 == 02:00:00:00:00:00 drop",
        "    ether type arp accept",
        f"    ether type ip tcp dport {{ {ports} }} meta mark set meta mark | {BRIDGED:#x} "
        "accept",
        "    drop", "  }",
        "}"]) + "\n"


def port_rules(bridge: str, port: str, mac: str, ip: str, dhcp: bool) -> str:
    """The port's chain (made or emptied, then filled) and its map element, in one
    transaction: a VM moved to another address keeps no trace of the old one."""
    table, chain = ports_table(bridge), _port_chain(port)
    ip = str(ipaddress.IPv4Address(ip))
    rules = [f"ether saddr != {mac} drop",
             f"ether type ip ip saddr {ip} accept"]
    if dhcp:  # asking for its lease, before it has its address
        rules.append("ether type ip ip saddr 0.0.0.0 udp sport 68 udp dport 67 accept")
    rules += [f"ether type arp arp htype 1 arp ptype ip arp hlen 6 arp plen 4 "
              f"arp saddr ether {mac} arp saddr ip {{ {ip}, 0.0.0.0 }} accept",
              "drop"]
    return "\n".join([
        _ports_table_text(bridge).rstrip("\n"),
        f"add chain bridge {table} {chain}", f"flush chain bridge {table} {chain}",
        *(f"add rule bridge {table} {chain} {rule}" for rule in rules),
        f'add element bridge {table} ports {{ "{port}" : jump {chain} }}']) + "\n"


def no_uplink(bridge: str) -> str:
    table = uplink_table(bridge)
    return f"table bridge {table}\ndelete table bridge {table}\n"


def unregister_port(bridge: str, port: str) -> None:
    """The port's entry and chain go (nothing to do when there are none)."""
    table, chain = ports_table(bridge), _port_chain(port)
    if not _nft("list", "table", "bridge", table):
        return
    # added first so that the deletions find them: one transaction either way
    apply("\n".join([f"add chain bridge {table} {chain}",
                     f'add element bridge {table} ports {{ "{port}" : jump {chain} }}',
                     f'delete element bridge {table} ports {{ "{port}" }}',
                     f"delete chain bridge {table} {chain}"]) + "\n")


def registered_ports(bridge: str) -> list[str]:
    """The ports that have a policy now (what `nft list map` shows)."""
    try:
        done = subprocess.run(["nft", "list", "map", "bridge", ports_table(bridge), "ports"],
                              capture_output=True, text=True)
    except FileNotFoundError:
        return []
    return re.findall(r'"([^"]+)"\s*:\s*jump', done.stdout) if done.returncode == 0 else []


def _nft(*args: str) -> bool:
    try:
        return subprocess.run(["nft", *args], capture_output=True).returncode == 0
    except FileNotFoundError:
        return False  # no nftables: no table to look at or to remove


def apply(text: str) -> None:
    try:
        done = subprocess.run(["nft", "-f", "-"], input=text, capture_output=True, text=True)
    except FileNotFoundError:
        raise BackendError("the VM network's firewall needs nft (Debian: nftables)") from None
    if done.returncode != 0:
        raise BackendError(f"firewall rules not applied: {done.stderr.strip()}")


def remove(bridge: str) -> None:
    _nft("delete", "table", "inet", f"qvd_{bridge}")
    _nft("delete", "table", "bridge", ports_table(bridge))
    _nft("delete", "table", "bridge", uplink_table(bridge))
