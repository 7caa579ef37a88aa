"""The SQL of the VM state machines. Every state write is a compare-and-set on
(vm_id, host_id = this node, vm_state = expected); a CAS that matches nothing is re-read."""
from __future__ import annotations

import os

from qvd.db.runtime.vm_image import unusable_reason
from qvd.db.runtime.vm_release import RELEASE_NODE

from .backends import VmAddress, VmSpec
from .database import Database

# Expirations ask a run to end (soft: the user is told, hard: it is stopped); once one has
# passed, the pair was for the run that ended, and the new run starts without them.
CLAIM_START = """
UPDATE vm_runtimes SET vm_cmd = NULL, vm_state = 'starting', vm_state_ts = now(),
  expiration_soft = CASE WHEN least(expiration_soft, expiration_hard) <= now() THEN NULL
                         ELSE expiration_soft END,
  expiration_hard = CASE WHEN least(expiration_soft, expiration_hard) <= now() THEN NULL
                         ELSE expiration_hard END
WHERE vm_id = %(vm)s AND host_id = %(host)s AND vm_cmd = 'start' AND vm_state = 'stopped'
  AND NOT blocked
RETURNING vm_id"""

CLAIM_STOP = """
UPDATE vm_runtimes SET vm_cmd = NULL
WHERE vm_id = %(vm)s AND host_id = %(host)s AND vm_cmd = 'stop'
RETURNING vm_state"""

PENDING = "SELECT vm_id, vm_cmd FROM vm_runtimes WHERE host_id = %(host)s AND vm_cmd IS NOT NULL"

# A start that cannot be claimed (the VM is blocked, or not stopped) is withdrawn with a reason.
REFUSE_START = """
UPDATE vm_runtimes SET vm_cmd = NULL, last_error = %(reason)s, last_error_at = now(),
       host_id = CASE WHEN vm_state = 'stopped' THEN NULL ELSE host_id END
WHERE vm_id = %(vm)s AND host_id = %(host)s AND vm_cmd = 'start'"""

SPEC = """
SELECT v.id, v.name, host(v.ip) AS ip, v.di_tag, v.user_id, v.discard_home,
       o.id AS osf_id, o.name AS osf,
       o.memory, o.use_overlay, o.user_storage_size,
       d.id AS di_id, d.path AS di_path, d.blocked AS di_blocked, d.trusted AS di_trusted
FROM vms v JOIN osfs o ON o.id = v.osf_id
LEFT JOIN di_tags t ON t.osf_id = o.id AND t.tag = v.di_tag
LEFT JOIN dis d ON d.id = t.di_id
WHERE v.id = %(vm)s"""

# Properties merged OSF < DI < user < VM: later wins.
PROPERTIES = """
SELECT key, value FROM (
  SELECT 1 AS rank, key, value FROM osf_properties WHERE owner_id = %(osf)s
  UNION ALL SELECT 2, key, value FROM di_properties WHERE owner_id = %(di)s
  UNION ALL SELECT 3, key, value FROM user_properties WHERE owner_id = %(user)s
  UNION ALL SELECT 4, key, value FROM vm_properties WHERE owner_id = %(vm)s) p
ORDER BY rank"""

SET_STATE = """
UPDATE vm_runtimes SET vm_state = %(new)s, vm_state_ts = now() {extra}
WHERE vm_id = %(vm)s AND host_id = %(host)s AND vm_state = %(old)s
RETURNING vm_id"""


READ_BACK = "SELECT host_id, vm_state FROM vm_runtimes WHERE vm_id = %(vm)s"

ON_HOST = """
SELECT vm_id, vm_state, host(vm_address) AS address, vm_vma_port, vm_x_port, vma_secret
FROM vm_runtimes WHERE host_id = %(host)s"""

COUNT = "UPDATE vm_counters SET {column} = {column} + 1 WHERE vm_id = %(vm)s"

FAILED_START = """
UPDATE vm_runtimes SET failed_starts = failed_starts + 1,
       blocked = blocked OR failed_starts + 1 >= %(max)s,
       last_error = CASE WHEN failed_starts + 1 >= %(max)s
                         THEN %(reason)s || ' (blocked after ' || (failed_starts + 1)
                              || ' failed starts in a row)'
                         ELSE %(reason)s END,
       last_error_at = now()
WHERE vm_id = %(vm)s
RETURNING blocked"""

# One statement per sync for every running VM of the node: liveness out, expirations in.
SYNC_LIVENESS = """
UPDATE vm_runtimes r SET vma_ok_ts = to_timestamp(s.ok)
FROM unnest(%(vms)s::int[], %(oks)s::float8[]) AS s(vm, ok)
WHERE r.vm_id = s.vm AND r.host_id = %(host)s"""

EXPIRATIONS = """
SELECT vm_id, extract(epoch FROM expiration_soft) AS soft, extract(epoch FROM expiration_hard) AS hard
FROM vm_runtimes WHERE host_id = %(host)s AND vm_state = 'running'
  AND (expiration_soft IS NOT NULL OR expiration_hard IS NOT NULL)"""


class VmStore:
    def __init__(self, db: Database, host_id: int, storage_root: str):
        self.db = db
        self.host_id = host_id
        self.images = os.path.join(storage_root, "images")

    def _p(self, vm_id: int, **more) -> dict:
        return {"vm": vm_id, "host": self.host_id, **more}

    async def claim_start(self, vm_id: int) -> bool:
        return await self.db.fetchone(CLAIM_START, self._p(vm_id)) is not None

    async def claim_stop(self, vm_id: int) -> str | None:
        row = await self.db.fetchone(CLAIM_STOP, self._p(vm_id))
        return row["vm_state"] if row else None

    async def pending_command(self, vm_id: int) -> str | None:
        row = await self.db.fetchone(PENDING + " AND vm_id = %(vm)s", self._p(vm_id))
        return row["vm_cmd"] if row else None

    async def refuse_start(self, vm_id: int, reason: str) -> None:
        await self.db.fetch(REFUSE_START, self._p(vm_id, reason=reason))

    async def pending_commands(self) -> list[tuple[int, str]]:
        return [(r["vm_id"], r["vm_cmd"]) for r in await self.db.fetch(PENDING, self._p(0))]

    async def spec(self, vm_id: int) -> tuple[VmSpec, int]:
        """The VM as the backend needs it, and the DI its tag names now.
        Raises LookupError with the reason when no usable DI exists."""
        row = await self.db.fetchone(SPEC, self._p(vm_id))
        if row is None:
            raise LookupError("the VM was deleted")
        reason = unusable_reason(row["osf"], row["di_tag"], row["di_id"], row["di_blocked"])
        if reason is not None:
            raise LookupError(reason)
        props = await self.db.fetch(PROPERTIES, {"osf": row["osf_id"], "di": row["di_id"],
                                                 "user": row["user_id"], "vm": vm_id})
        spec = VmSpec(vm_id=vm_id, name=row["name"], memory=row["memory"], ip=row["ip"],
                      image=os.path.join(self.images, row["di_path"]),
                      image_trusted=bool(row["di_trusted"]),
                      use_overlay=row["use_overlay"], user_storage=row["user_storage_size"],
                      user_id=row["user_id"], properties={p["key"]: p["value"] for p in props},
                      discard_home=row["discard_home"])
        return spec, row["di_id"]

    async def home_discarded(self, vm_id: int) -> None:
        await self.db.fetch("UPDATE vms SET discard_home = false WHERE id = %(vm)s",
                            {"vm": vm_id})

    async def set_state(self, vm_id: int, old: str, new: str, release: bool = False,
                        **fields) -> bool:
        """CAS old -> new (plus fields); False when the VM is no longer ours in state `old`."""
        extra = "".join(f", {name} = %({name})s" for name in fields)
        if release:
            extra += ", " + RELEASE_NODE
        if fields.get("last_error") is not None:
            extra += ", last_error_at = now()"
        sql = SET_STATE.format(extra=extra)
        if await self.db.fetchone(sql, self._p(vm_id, old=old, new=new, **fields)):
            return True
        # Nothing matched: maybe our own write landed and only its answer was lost.
        row = await self.db.fetchone(READ_BACK, self._p(vm_id))
        expected_host = None if release else self.host_id
        return row is not None and row["vm_state"] == new and row["host_id"] == expected_host

    async def set_address(self, vm_id: int, address: VmAddress, di_id: int) -> None:
        await self.db.fetch(
            "UPDATE vm_runtimes SET vm_address = %(a)s, vm_vma_port = %(v)s, vm_x_port = %(x)s,"
            " vm_vnc_port = %(n)s, current_di_id = %(di)s, vma_secret = %(s)s"
            " WHERE vm_id = %(vm)s AND host_id = %(host)s",
            self._p(vm_id, a=address.address, v=address.vma_port, x=address.x_port,
                    n=address.vnc_port, di=di_id, s=address.secret or None))

    async def note_error(self, vm_id: int, reason: str) -> None:
        """A reason for the admin on a VM that carries on (its state does not change)."""
        await self.db.fetch("UPDATE vm_runtimes SET last_error = %(reason)s, last_error_at = now()"
                            " WHERE vm_id = %(vm)s AND host_id = %(host)s",
                            self._p(vm_id, reason=reason))

    async def set_pid(self, vm_id: int, pid: int | None) -> None:
        await self.db.fetch("UPDATE vm_runtimes SET vm_pid = %(pid)s WHERE vm_id = %(vm)s"
                            " AND host_id = %(host)s", self._p(vm_id, pid=pid))

    async def count(self, vm_id: int, column: str) -> None:
        assert column in ("run_attempts", "run_ok", "run_failed")
        await self.db.fetch(COUNT.format(column=column), self._p(vm_id))

    async def failed_start(self, vm_id: int, reason: str, max_failed: int) -> bool:
        row = await self.db.fetchone(FAILED_START, self._p(vm_id, reason=reason, max=max_failed))
        return bool(row and row["blocked"])

    async def on_host(self) -> list[dict]:
        return await self.db.fetch(ON_HOST, self._p(0))

    async def sync_liveness(self, last_ok: dict[int, float]) -> dict[int, tuple]:
        if last_ok:
            await self.db.fetch(SYNC_LIVENESS, self._p(0, vms=list(last_ok),
                                                       oks=list(last_ok.values())))
        rows = await self.db.fetch(EXPIRATIONS, self._p(0))
        return {r["vm_id"]: (r["soft"], r["hard"]) for r in rows}
