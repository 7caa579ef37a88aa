"""One module per object of `qvd-admin <object> <verb>`."""
from . import (acl, admin, config, db, di, host, log, osf, role, session,  # noqa: F401
               system, tenant, user, vm, vm_commands)

ALL_GROUPS = [tenant.group, user.group, osf.group, di.group, vm.group, host.group, config.group,
              session.group, log.group, admin.group, role.group, acl.group, db.group,
              system.group]
