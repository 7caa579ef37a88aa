"""Firewall rules for the VM bridge (nftables), one table per bridge, replaced whole each time:

- protect_host: VMs cannot open connections to the node (answers to connections the node
  opened, such as the L7R's and the HKD's, still flow);
- nat: VM traffic leaving by another interface is masqueraded (off unless configured: nothing
  leaves the machine unless an admin wants it to).

protect_vms is not here: each VM's bridge port is isolated instead (bridge.isolate_port), which
keeps VMs apart on exactly this bridge.
"""
from __future__ import annotations

import subprocess

from .base import BackendError


def ruleset(bridge: str, network: str, protect_host: bool, nat: bool,
            dhcp: bool = False) -> str:
    table = f"qvd_{bridge}"
    inet = [f'iifname "{bridge}" ct state established,related accept']
    if dhcp:  # the node's dnsmasq gives the VMs their addresses
        inet.append(f'iifname "{bridge}" udp dport 67 accept')
    if protect_host:
        inet.append(f'iifname "{bridge}" drop')
    lines = [f"table inet {table}", f"delete table inet {table}",
             f"table inet {table} {{",
             "  chain input {", "    type filter hook input priority 0; policy accept;",
             *(f"    {rule}" for rule in inet), "  }"]
    if nat:
        lines += ["  chain postrouting {", "    type nat hook postrouting priority 100;",
                  f'    ip saddr {network} oifname != "{bridge}" masquerade', "  }"]
    lines.append("}")
    return "\n".join(lines) + "\n"


def apply(text: str) -> None:
    done = subprocess.run(["nft", "-f", "-"], input=text, capture_output=True, text=True)
    if done.returncode != 0:
        raise BackendError(f"firewall rules not applied: {done.stderr.strip()}")


def remove(bridge: str) -> None:
    subprocess.run(["nft", "delete", "table", "inet", f"qvd_{bridge}"], capture_output=True)
