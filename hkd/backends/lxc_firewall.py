"""Firewall rules for the VM bridge (nftables), one table per bridge, replaced whole each time:

- protect_host: VMs cannot open connections to the node (answers to connections the node
  opened, such as the L7R's and the HKD's, still flow);
- protect_vms: VMs cannot reach each other across the bridge;
- nat: VM traffic leaving by another interface is masqueraded (off unless configured: nothing
  leaves the machine unless an admin wants it to).
"""
from __future__ import annotations

import subprocess

from .base import BackendError
from .lxc_network import VETH_PREFIX


def ruleset(bridge: str, network: str, protect_host: bool, protect_vms: bool,
            nat: bool) -> str:
    table = f"qvd_{bridge}"
    inet = [f'iifname "{bridge}" ct state established,related accept']
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
    lines += [f"table bridge {table}", f"delete table bridge {table}"]
    if protect_vms:
        lines += [f"table bridge {table} {{",
                  "  chain forward {", "    type filter hook forward priority 0; policy accept;",
                  # between two VM ports (veths are named qvd<vm id>, see lxc_network)
                  f'    iifname "{VETH_PREFIX}*" oifname "{VETH_PREFIX}*" drop', "  }", "}"]
    return "\n".join(lines) + "\n"


def apply(text: str) -> None:
    done = subprocess.run(["nft", "-f", "-"], input=text, capture_output=True, text=True)
    if done.returncode != 0:
        raise BackendError(f"firewall rules not applied: {done.stderr.strip()}")


def remove(bridge: str) -> None:
    for family in ("inet", "bridge"):
        subprocess.run(["nft", "delete", "table", family, f"qvd_{bridge}"], capture_output=True)
