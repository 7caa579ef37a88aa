"""The audit log: one row per change, refused attempt or failed change, written by every
front end (cli, api, wat) with the acting administrator and without secrets."""
from __future__ import annotations

from sqlalchemy.orm import Session

from qvd.db.acl.actor import Actor
from qvd.db.models import AdminLogEntry

SECRET_WORDS = ("password", "secret", "bindpass", "passwd")
REDACTED = "***"


def is_secret(key: str) -> bool:
    low = key.lower()
    return any(word in low for word in SECRET_WORDS)


def redact(value):
    """The same structure with every value under a secret-looking key replaced."""
    if isinstance(value, dict):
        return {key: REDACTED if is_secret(str(key)) else redact(item)
                for key, item in value.items()}
    if isinstance(value, list):
        return [redact(item) for item in value]
    return value


def record(session: Session, actor: Actor | None, obj: str, action: str, arguments: dict,
           object_ids=(), tenant_id: int | None = None, status: str = "ok",
           error: str | None = None, source: str = "cli", client_address: str | None = None,
           who: str | None = None) -> None:
    """Add the entry to the session's transaction (a change and its entry land together).
    `who` names an attempt that has no actor yet (a refused login)."""
    session.add(AdminLogEntry(
        who=who or actor.name, administrator_id=actor.administrator_id if actor else None,
        tenant_id=tenant_id, object=obj, action=action, arguments=redact(arguments),
        object_ids=sorted(object_ids), source=source, client_address=client_address,
        status=status, error=error))
