"""One module per object of `qvd-admin <object> <verb>`."""
from . import (config, db, di, host, log, osf, session, system, tenant, user,  # noqa: F401
               vm, vm_commands)

ALL_GROUPS = [tenant.group, user.group, osf.group, di.group, vm.group, host.group, config.group,
              session.group, log.group, db.group, system.group]
