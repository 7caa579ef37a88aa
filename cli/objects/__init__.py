"""One module per object of `qvd-admin <object> <verb>`."""
from . import config, db, di, host, log, osf, system, tenant, user, vm, vm_commands  # noqa: F401

ALL_GROUPS = [tenant.group, user.group, osf.group, di.group, vm.group, host.group, config.group,
              log.group, db.group, system.group]
