"""session list: the history of desktop connections (who, which VM, which node,
from where, when, bytes each way, why it ended)."""
from sqlalchemy import func, select

from qvd.db.models import DesktopSession, Tenant, User

from .selection import ObjectView
from .registry import object_kind
from .common import add_list_verb

group = object_kind("session", "Desktop connections, past and present.")

_duration = func.round(func.extract("epoch", func.coalesce(DesktopSession.ended_at, func.now())
                                    - DesktopSession.started_at), 1)
VIEW = ObjectView("session", {
    "id": DesktopSession.id, "tenant": Tenant.name, "user": DesktopSession.login,
    "vm": DesktopSession.vm_name, "vm_id": DesktopSession.vm_id, "host": DesktopSession.host_name,
    "client": DesktopSession.client_address, "started": DesktopSession.started_at,
    "ended": DesktopSession.ended_at, "seconds": _duration,
    "bytes_in": DesktopSession.bytes_from_client, "bytes_out": DesktopSession.bytes_to_client,
    "end_reason": DesktopSession.end_reason,
}, select(DesktopSession).outerjoin(User, User.id == DesktopSession.user_id)
   .outerjoin(Tenant, Tenant.id == User.tenant_id), tenant=Tenant.name)

add_list_verb(group, VIEW)
