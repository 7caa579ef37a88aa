"""The statements on pool VMs that qvd-hkd's pool keeper (asynchronous) and the L7R (handing
out) both send: the pool's lock, its VMs as they are, a new VM. Whoever decides how many VMs
a pool has, or starts one of them, holds the pool's lock for its transaction, so that max and
pool.max_preparing hold across every node: the keepers try it (another node is at it: fine),
the L7R waits for it (a few milliseconds)."""
from __future__ import annotations

TRY_LOCK = "SELECT pg_try_advisory_xact_lock(hashtext('qvd: pool'), %(pool)s) AS got"
LOCK = "SELECT pg_advisory_xact_lock(hashtext('qvd: pool'), %(pool)s)"
CHANNEL = "qvd_pools"  # payload: the pool's id (migration 0012's triggers)

# The pools %(user)s may use: as a member, or through a directory group the LDAP plugin saw
# them in at their last password login (users.directory_groups).
ENTITLED_POOLS = """
SELECT m.pool_id FROM pool_members m WHERE m.user_id = %(user)s
UNION
SELECT g.pool_id FROM pool_groups g JOIN users u ON g.name = ANY(u.directory_groups)
WHERE u.id = %(user)s"""

POOL = """
SELECT p.id, p.tenant_id, p.name, p.osf_id, p.di_tag, p.min, p.max, p.spare, p.blocked,
       p.assignment, p.last_reason, o.memory
FROM pools p JOIN osfs o ON o.id = p.osf_id"""

# Its VMs, locked: a spare the keeper stops or deletes is not claimed meanwhile (the L7R's
# claim skips locked rows), and a claim in flight is waited for.
VMS = """
SELECT v.id, v.user_id, v.discard_home, r.vm_state, r.vm_cmd, r.blocked, r.host_id, r.user_state,
       extract(epoch FROM now() - r.user_state_ts)::float8 AS user_idle,
       r.current_di_id, t.di_id AS tag_di_id
FROM vms v JOIN vm_runtimes r ON r.vm_id = v.id
LEFT JOIN di_tags t ON t.osf_id = v.osf_id AND t.tag = v.di_tag
WHERE v.pool_id = %(pool)s ORDER BY v.id FOR UPDATE OF v"""

NEXT_NUMBER = """
UPDATE pools SET vms_made = vms_made + 1 WHERE id = %(pool)s
RETURNING vms_made AS n, vm_names, name"""

NEW_VM = """
INSERT INTO vms (name, tenant_id, user_id, pool_id, osf_id, di_tag, ip)
SELECT %(name)s, p.tenant_id, %(user)s, p.id, p.osf_id, p.di_tag, %(ip)s
FROM pools p WHERE p.id = %(pool)s RETURNING id"""
NEW_VM_ROWS = ("INSERT INTO vm_runtimes (vm_id) VALUES (%(vm)s)",
               "INSERT INTO vm_counters (vm_id) VALUES (%(vm)s)")

# Only a stopped spare nobody asked anything of goes (a pool shrinking back); not one given
# back by a user whose files its next start discards (deleting a VM leaves its disks).
DELETE_SPARE = """
DELETE FROM vms v USING vm_runtimes r
WHERE v.id = %(vm)s AND r.vm_id = v.id AND v.user_id IS NULL AND NOT v.discard_home
  AND r.vm_state = 'stopped' AND r.vm_cmd IS NULL AND r.host_id IS NULL"""

# A throw-away VM whose user left release_after ago: stopped, then back to the pool (the next
# start begins fresh). Both re-check that the user is still away as they write, under the
# row's lock: the keeper decided on what it read, and the user may have come back since
# (the L7R's TAKE marks them connecting first).
STILL_LEFT = """r.user_state = 'disconnected'
  AND r.user_state_ts <= now() - make_interval(secs => %(after)s)"""
STOP_LEFT = """
UPDATE vm_runtimes r SET vm_cmd = 'stop'
WHERE r.vm_id = %(vm)s AND r.vm_state IN ('starting', 'running') AND r.vm_cmd IS NULL
  AND """ + STILL_LEFT
RELEASE = """
UPDATE vms v SET user_id = NULL, discard_home = true FROM vm_runtimes r
WHERE v.id = %(vm)s AND r.vm_id = v.id AND r.vm_state = 'stopped' AND r.vm_cmd IS NULL
  AND """ + STILL_LEFT
# Taken: the user's idle time starts now (a throw-away VM is not released before they come).
TAKEN = "UPDATE vm_runtimes SET user_state_ts = now() WHERE vm_id = %(vm)s"

REASON = """
UPDATE pools SET last_reason = %(reason)s, last_reason_at = now()
WHERE id = %(pool)s AND last_reason IS DISTINCT FROM %(reason)s"""


def preparing(vm: dict) -> bool:
    """Being started: what pool.max_preparing counts."""
    return vm["vm_state"] == "starting" or vm["vm_cmd"] == "start"


def up(vm: dict) -> bool:
    """Running or on its way there, and not asked to stop."""
    return (vm["vm_state"] == "running" and vm["vm_cmd"] is None) or preparing(vm)


def outdated(vm: dict) -> bool:
    """Running another DI than the one its tag names now (a rollout is due)."""
    return (vm["vm_state"] == "running" and vm["current_di_id"] is not None
            and vm["tag_di_id"] is not None and vm["current_di_id"] != vm["tag_di_id"])


def idle(vm: dict) -> bool:
    """Stopped, asked nothing, not blocked: may be started or deleted."""
    return vm["vm_state"] == "stopped" and vm["vm_cmd"] is None and not vm["blocked"]


def vm_name(pattern: str, pool: str, number: int) -> str:
    return pattern.replace("{pool}", pool).replace("{n}", str(number))
