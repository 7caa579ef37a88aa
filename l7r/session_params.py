"""The parameters of x_start (QVD-REFERENCE §2 step 5): the node's vma.* and qvd.vm.user.*
settings, then the VM's properties merged OSF < DI < user < VM (later wins), then what the
authentication learnt about the user (LDAP uid/gid/home), then the client's qvd.client.*
options. Session-defining keys come from the admin side only: the client cannot send them
(connect_to_vm refuses any parameter outside qvd.client.* and custom.*, and this drops any that
got here), and where an admin set a client key too, the admin's value wins.
"""
from __future__ import annotations

from qvd.db.config_keys import KEYS

SETTINGS = [k.name for k in KEYS if k.name.startswith(("vma.", "qvd.vm.user."))]

MERGED_PROPERTIES = """
SELECT key, value FROM (
  SELECT p.key, p.value, 1 AS level FROM osf_properties p
    JOIN vm_runtimes r ON p.owner_id = COALESCE(r.current_osf_id, (SELECT osf_id FROM vms WHERE id = r.vm_id))
    WHERE r.vm_id = %(vm)s
  UNION ALL
  SELECT p.key, p.value, 2 FROM di_properties p JOIN vm_runtimes r ON p.owner_id = r.current_di_id
    WHERE r.vm_id = %(vm)s
  UNION ALL
  SELECT p.key, p.value, 3 FROM user_properties p JOIN vms v ON p.owner_id = v.user_id
    WHERE v.id = %(vm)s
  UNION ALL
  SELECT p.key, p.value, 4 FROM vm_properties p WHERE p.owner_id = %(vm)s
) merged ORDER BY level"""

# qvd.vm.user.home is the parent of homes (a setting); LDAP's homeDirectory is the home itself
IDENTITY_KEYS = {"uid": "qvd.vm.user.uid", "gid": "qvd.vm.user.gid", "home": "qvd.auth.home"}


CLIENT_PREFIXES = ("qvd.client.", "custom.")


def node_settings(cfg) -> dict[str, str]:
    """The node's vma.* and qvd.vm.user.* settings that are set."""
    return {name: str(cfg.get(name)) for name in SETTINGS if cfg.get(name) not in (None, "")}


def x_start_params(db, cfg, vm_id: int, identity, client: list[tuple[str, str]]) -> dict:
    params = {key: value for key, value in client if key.startswith(CLIENT_PREFIXES)}
    params.update(node_settings(cfg))
    params.update((row["key"], row["value"]) for row in db.fetch(MERGED_PROPERTIES, {"vm": vm_id}))
    extra = getattr(identity, "extra", None) or {}
    params.update((IDENTITY_KEYS[k], str(v)) for k, v in extra.items() if k in IDENTITY_KEYS and v)
    return params
