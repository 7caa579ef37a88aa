"""The domain layer: every operation that reads or changes the system (add, edit, delete and
list of each object, VM start / stop / disconnect / block, DI tags, properties, config), one
module per object. Each takes a Context (who acts, from where) and a Request (filters, tenant,
arguments), checks the ACLs, validates, writes, records the audit entry and raises DomainError
with a message a person understands. qvd-admin and qvd-api are front ends over REGISTRY."""
from . import (acls, admins, configs, dis, hosts, logs, osfs, pools,  # noqa: F401 - they register
               roles, sessions, tenants, users, vm_commands, vm_rollouts, vm_spy, vms)
from .registry import OBJECTS, REGISTRY  # noqa: F401
