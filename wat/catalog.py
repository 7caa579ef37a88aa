"""What the WAT shows of each kind of object: the columns a list starts with, the actions it
offers on a selection, and which objects have a detail page. The operations themselves, their
fields and their ACLs come from the domain layer (db/ops)."""
from __future__ import annotations

# Columns shown until the administrator chooses others (every listed field can be chosen).
COLUMNS = {
    "vms": ["id", "name", "tenant", "user", "osf", "di_tag", "di", "state", "host", "user_state",
            "blocked", "last_error"],
    "users": ["id", "tenant", "login", "blocked", "vms", "created"],
    "hosts": ["id", "name", "address", "state", "blocked", "vms", "usable_ram", "lease_age",
              "last_error"],
    "sessions": ["id", "tenant", "user", "vm", "host", "client", "started", "ended",
                 "end_reason"],
    "logs": ["id", "at", "who", "tenant", "object", "action", "status", "object_ids", "error"],
}


class Action:
    """A verb a list offers on a selection or a filter: the operation it runs, the arguments
    it adds (`retag` is `vm edit di_tag=...`, asked for in the confirmation), and its words."""

    def __init__(self, verb: str, label: str, operation: str | None = None,
                 asks: str | None = None, danger: bool = False):
        self.verb, self.label = verb, label
        self.operation_verb = operation or verb
        self.asks = asks          # an argument the confirmation asks for
        self.danger = danger

    def operation(self, obj: str) -> str:
        return f"{obj} {self.operation_verb}"

    def argument_keys(self) -> tuple[str, ...]:
        return (self.asks,) if self.asks else ()


_BLOCKING = [Action("block", "Block"), Action("unblock", "Unblock")]
_DELETE = Action("del", "Delete", danger=True)
ACTIONS = {
    "vms": [Action("start", "Start"), Action("stop", "Stop"),
            Action("disconnect", "Disconnect"), *_BLOCKING,
            Action("retag", "Retag", operation="edit", asks="di_tag"), _DELETE],
    "users": [*_BLOCKING, _DELETE],
    "hosts": [*_BLOCKING, Action("stop", "Stop node"), _DELETE],
    "osfs": [_DELETE],
    "dis": [*_BLOCKING, _DELETE],
    "tenants": [*_BLOCKING, _DELETE],
    "admins": [*_BLOCKING, _DELETE],
    "roles": [_DELETE],
    "tokens": [Action("del", "Revoke", danger=True)],
}

# Verbs with arguments, offered as forms on an object's page: (verb, what the button says).
FORM_VERBS = {
    "vms": [("edit", "Edit (name, image tag, expiration)")],
    "users": [("passwd", "Set the password")],
    "dis": [("tag", "Tag"), ("untag", "Remove a tag")],
    "admins": [("role", "Grant or revoke roles"), ("passwd", "Password and TOTP")],
    "roles": [("acl", "Change ACLs and included roles")],
}

# Objects with a page of their own (/wat/<resource>/<id>), found by the listing's id.
DETAILED = {"vms", "users", "hosts", "osfs", "dis", "tenants", "admins", "roles", "sessions",
            "logs"}

# Lists whose rows are named by another field than a numeric id (a token's prefix).
KEY_FIELDS = {"tokens": "token"}


def action(resource: str, verb: str) -> Action | None:
    return next((a for a in ACTIONS.get(resource, []) if a.verb == verb), None)
