"""All tables; importing this module registers every model on Base.metadata."""
from .base import Base
from .history import AdminLogEntry, DesktopSession
from .hosts import Host, HostCounter, HostRuntime
from .images import Di, DiTag, Osf
from .pools import Pool, PoolGroup, PoolMember
from .properties import PROPERTY_MODELS
from .settings import ConfigEntry, SslConfig
from .throttling import AuthFailure
from .tenancy import (DEFAULT_TENANT, GLOBAL_TENANT, SUPERTENANT, Acl, AclRoleRelation,
                      Administrator, AdminToken, Role, RoleAdministratorRelation, RoleRoleRelation, Tenant,
                      User, UserToken)
from .vms import Vm, VmCounter, VmRuntime

__all__ = [
    "Base", "AuthFailure", "AdminLogEntry", "DesktopSession", "Host", "HostCounter", "HostRuntime", "Di", "DiTag",
    "Osf", "Pool", "PoolGroup", "PoolMember", "PROPERTY_MODELS", "ConfigEntry", "SslConfig", "DEFAULT_TENANT", "GLOBAL_TENANT",
    "SUPERTENANT", "Acl", "AclRoleRelation", "Administrator", "Role", "RoleAdministratorRelation",
    "RoleRoleRelation", "Tenant", "User", "UserToken", "Vm", "VmCounter", "VmRuntime",
]
