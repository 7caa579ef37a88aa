"""VM addresses: from vm.network.ip.start to the top of vm.network.netmask's network."""
from __future__ import annotations

import ipaddress

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the L7R imports vm_range and never the ORM
    from sqlalchemy.orm import Session


class AddressError(Exception):
    """No address can be given; the message says why."""


def vm_range(start: str, netmask: str) -> tuple[ipaddress.IPv4Address, ipaddress.IPv4Address]:
    network = ipaddress.IPv4Network(f"{start}/{netmask}", strict=False)
    return ipaddress.IPv4Address(start), network.broadcast_address - 1


def free_addresses(session: Session, start: str, netmask: str, count: int) -> list[str]:
    """The first `count` addresses of the range that no VM or host uses."""
    from sqlalchemy import select

    from .models import Host, Vm
    first, last = vm_range(start, netmask)
    used = {ipaddress.ip_address(str(a).split("/")[0]) for a in
            list(session.scalars(select(Vm.ip))) + list(session.scalars(select(Host.address)))}
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
