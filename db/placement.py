"""Choosing the node that runs a VM: QVD's score, but only among nodes the VM's memory fits.

score = (w_ram * free_ram + w_cpu * free_cpu) / (vms_on_host + 1) + random() * w_random
A node qualifies when it is a running, unblocked backend whose lease is fresh (by the
database's clock) and whose free memory (usable_ram minus the OSF memory of its VMs) holds
the VM's OSF memory.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from .config import Config

if TYPE_CHECKING:  # the L7R imports this module and never the ORM
    from sqlalchemy.orm import Session

CANDIDATES = """
SELECT h.id, h.name,
       hr.usable_ram - COALESCE(load.memory, 0) AS free_ram,
       COALESCE(hr.usable_cpu, 0) AS free_cpu,
       COALESCE(load.vms, 0) AS vms
FROM hosts h
JOIN host_runtimes hr ON hr.host_id = h.id
LEFT JOIN (SELECT vr.host_id, sum(o.memory) AS memory, count(*) AS vms
           FROM vm_runtimes vr JOIN vms v ON v.id = vr.vm_id JOIN osfs o ON o.id = v.osf_id
           WHERE vr.host_id IS NOT NULL GROUP BY vr.host_id) load ON load.host_id = h.id
WHERE h.backend AND hr.state = 'running' AND NOT hr.blocked
  AND hr.ok_ts > now() - make_interval(secs => %(node_timeout)s)
  AND hr.usable_ram - COALESCE(load.memory, 0) >= %(memory)s
ORDER BY (%(w_ram)s * (hr.usable_ram - COALESCE(load.memory, 0)) + %(w_cpu)s * COALESCE(hr.usable_cpu, 0))
         / (COALESCE(load.vms, 0) + 1) + random() * %(w_random)s DESC
LIMIT 1
"""


def placement_params(cfg: Config, memory: int) -> dict:
    prefix = "l7r.loadbalancer.plugin.default.weight."
    return {"node_timeout": cfg.get_float("hkd.cluster.node_timeout"), "memory": memory,
            "w_ram": cfg.get_float(prefix + "ram"), "w_cpu": cfg.get_float(prefix + "cpu"),
            "w_random": cfg.get_float(prefix + "random")}


def choose_host(session: Session, cfg: Config, memory: int) -> int | None:
    """With an SQLAlchemy session (the CLI); the L7R runs CANDIDATES on its own connection."""
    row = session.connection().exec_driver_sql(CANDIDATES, placement_params(cfg, memory)).first()
    return row.id if row else None
