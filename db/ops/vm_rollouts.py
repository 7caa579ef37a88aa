"""vm rollout: the image rollouts in progress. A VM starts the DI its tag names at that
moment, so after a retag or a new DI the running VMs keep their old image until their next
start; this lists, per OSF and tag, how many running VMs still do."""
from sqlalchemy import func, select

from qvd.db.models import Di, DiTag, Osf, Tenant, Vm, VmRuntime

from .errors import NotFound
from .grammar import check_keys
from .registry import verb
from .vms import group

FIELDS = ["tenant", "osf", "tag", "version", "running", "behind"]


@verb(group, "rollout", "List the image rollouts in progress: per OSF and DI tag, the running "
                        "VMs that still run another DI than the one the tag names now (they take "
                        "it at their next start).", lists=True)
def rollout(admin, call):
    check_keys(call.args, ())
    check_keys(call.filters, ())
    behind = func.count().filter(VmRuntime.current_di_id != DiTag.di_id)
    stmt = (select(Tenant.name, Osf.name, Vm.di_tag, Di.version, func.count(), behind)
            .select_from(Vm).join(VmRuntime, VmRuntime.vm_id == Vm.id)
            .join(Tenant, Tenant.id == Vm.tenant_id)
            .join(Osf, Osf.id == Vm.osf_id)
            .join(DiTag, (DiTag.osf_id == Vm.osf_id) & (DiTag.tag == Vm.di_tag))
            .join(Di, Di.id == DiTag.di_id)
            .where(VmRuntime.vm_state == "running", VmRuntime.current_di_id.isnot(None))
            .group_by(Tenant.name, Osf.name, Vm.di_tag, Di.version).having(behind > 0)
            .order_by(Tenant.name, Osf.name, Vm.di_tag))
    if call.only_tenant and call.tenant not in (None, call.only_tenant):
        raise NotFound(f"unknown tenant '{call.tenant}'")
    only = call.only_tenant or call.tenant
    if only is not None:
        stmt = stmt.where(Tenant.name == only)
    with admin.session() as s:
        rows = [dict(zip(FIELDS, row)) for row in s.execute(stmt)]
    admin.show(FIELDS, rows)
