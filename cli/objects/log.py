"""qvd-admin log list: the audit log of every change made with qvd-admin."""
from sqlalchemy import select

from qvd.db.models import AdminLogEntry

from ..selection import ObjectView
from ..verbs import object_group
from .common_verbs import add_list_verb

group = object_group("log", "Who changed what, and when.")

VIEW = ObjectView("log entry", {"id": AdminLogEntry.id, "at": AdminLogEntry.at,
                                "who": AdminLogEntry.who, "object": AdminLogEntry.object,
                                "action": AdminLogEntry.action,
                                "object_ids": AdminLogEntry.object_ids,
                                "arguments": AdminLogEntry.arguments},
                  select(AdminLogEntry))

add_list_verb(group, VIEW)
