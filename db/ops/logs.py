"""log list: the audit log: every change, refused attempt and failed change, who
made it (an administrator, or local:<unix user>), on which tenant, how it ended."""
from sqlalchemy import select

from qvd.db.models import AdminLogEntry, Tenant

from .selection import ObjectView
from .registry import object_kind
from .common import add_list_verb

group = object_kind("log", "Who changed what, and when.")

VIEW = ObjectView("log entry", {"id": AdminLogEntry.id, "at": AdminLogEntry.at,
                                "who": AdminLogEntry.who, "tenant": Tenant.name,
                                "object": AdminLogEntry.object,
                                "action": AdminLogEntry.action,
                                "status": AdminLogEntry.status,
                                "object_ids": AdminLogEntry.object_ids,
                                "arguments": AdminLogEntry.arguments,
                                "source": AdminLogEntry.source,
                                "client": AdminLogEntry.client_address,
                                "error": AdminLogEntry.error},
                  select(AdminLogEntry).outerjoin(Tenant, Tenant.id == AdminLogEntry.tenant_id),
                  tenant=Tenant.name)

add_list_verb(group, VIEW)
