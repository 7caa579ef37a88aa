"""Which image a VM starts from: the DI that its OSF's tag (vms.di_tag) names. A missing or
blocked DI is an administrator's decision, not a failure of the VM: a start is refused."""
from __future__ import annotations


def unusable_reason(osf: str, tag: str, di_id: int | None, di_blocked: bool | None) -> str | None:
    """Why the VM cannot start from its DI, or None when it can."""
    if di_id is None:
        return f"OSF '{osf}' has no DI tagged '{tag}'"
    if di_blocked:
        return f"the DI tagged '{tag}' of OSF '{osf}' is blocked"
    return None
