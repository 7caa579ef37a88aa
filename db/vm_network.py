"""VM addresses: from vm.network.ip.start to the top of vm.network.netmask's network, minus
the addresses the nodes hold on it (hosts.vm_address, issue 20)."""
from __future__ import annotations

import ipaddress

# Whoever gives addresses (qvd-admin vm add, the L7R's LDAP autocreate) holds this lock until
# its transaction ends, so two of them never pick the same one.
ADDRESS_LOCK = "SELECT pg_advisory_xact_lock(hashtext('qvd: vm addresses'))"
USED = ("SELECT host(ip) AS address FROM vms UNION SELECT host(address) FROM hosts "
        "UNION SELECT host(vm_address) FROM hosts")
# Who else holds an address a node means to take on the VM network (host add/edit
# vm_address=, and qvd-hkd at its start): other nodes (kind 'node') and VMs (kind 'VM').
ADDRESS_HOLDERS = """
SELECT 'node' AS kind, name FROM hosts WHERE vm_address = %(address)s AND id <> %(host)s
UNION ALL SELECT 'VM', name FROM vms WHERE ip = %(address)s"""


class AddressError(Exception):
    """No address can be given; the message says why."""


def vm_range(start: str, netmask: str) -> tuple[ipaddress.IPv4Address, ipaddress.IPv4Address]:
    network = ipaddress.IPv4Network(f"{start}/{netmask}", strict=False)
    return ipaddress.IPv4Address(start), network.broadcast_address - 1


def free_addresses(db, start: str, netmask: str, count: int) -> list[str]:
    """The first `count` addresses of the range that no VM or host uses; db: fetch/execute
    (db/runtime), locked until its transaction ends."""
    db.execute(ADDRESS_LOCK)
    return pick_free(db.fetch(USED), start, netmask, count)


def pick_free(used_rows: list[dict], start: str, netmask: str, count: int) -> list[str]:
    """The first `count` addresses of the range not among USED's rows (qvd-hkd's pool keeper
    runs ADDRESS_LOCK and USED on its own asynchronous connection)."""
    first, last = vm_range(start, netmask)
    used = {ipaddress.ip_address(row["address"]) for row in used_rows if row["address"]}
    found: list[str] = []
    candidate = first
    while len(found) < count and candidate <= last:
        if candidate not in used:
            found.append(str(candidate))
        candidate += 1
    if len(found) < count:
        raise AddressError(f"the VM network {first}-{last} has only {len(found)} free "
                           f"address(es), {count} needed")
    return found


def check_address(value: str, start: str, netmask: str) -> str:
    try:
        address = ipaddress.IPv4Address(value)
    except ValueError:
        raise AddressError(f"'{value}' is not an IPv4 address") from None
    first, last = vm_range(start, netmask)
    if not first <= address <= last:
        raise AddressError(f"{address} is outside the VM network {first}-{last} "
                           "(vm.network.ip.start, vm.network.netmask)")
    return str(address)


def check_node_address(value: str, start: str, netmask: str) -> str:
    """A node's own address on the VM network (host add/edit vm_address=): an IPv4 address of
    the network, neither its network nor its broadcast address."""
    try:
        address = ipaddress.IPv4Address(value)
    except ValueError:
        raise AddressError(f"vm_address '{value}' is not an IPv4 address") from None
    network = ipaddress.IPv4Network(f"{start}/{netmask}", strict=False)
    if address not in network or address in (network.network_address,
                                             network.broadcast_address):
        raise AddressError(f"vm_address {address} is not a node address of the VM network "
                           f"{network} (vm.network.ip.start, vm.network.netmask)")
    return str(address)
