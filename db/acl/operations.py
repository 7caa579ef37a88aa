"""What each operation needs: the one map from an operation (`vm start`, `user token del`,
the words qvd-admin takes after its name; the API's resources will map onto the same names)
to the ACLs the acting administrator must hold.

An operation needs all of `acls`, plus, for each key=value argument it is given, that key's
ACL in `by_argument` (`vm edit name=...` needs vm.update.name). LOCAL operations act on this
node's own database server or services: only a local run (the node file's superadmin) may.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .names import ACLS, PROPERTY_OBJECTS, is_read


@dataclass(frozen=True)
class Needs:
    acls: tuple[str, ...] = ()
    by_argument: dict[str, str] = field(default_factory=dict)

    def for_arguments(self, keys) -> list[str]:
        extra = [self.by_argument[key] for key in keys if key in self.by_argument]
        return list(dict.fromkeys([*self.acls, *extra]))

    @property
    def reads_only(self) -> bool:
        return all(is_read(name) for name in [*self.acls, *self.by_argument.values()])


LOCAL = None


def needs(*acls: str, **by_argument: str) -> Needs:
    return Needs(acls, by_argument)


def _standard(obj: str, acl_object: str | None = None) -> dict[str, Needs]:
    """add / del / list, the same for every object."""
    prefix = acl_object or obj
    return {f"{obj} add": needs(f"{prefix}.create."), f"{obj} del": needs(f"{prefix}.delete."),
            f"{obj} list": needs(f"{prefix}.see-main.")}


def _blocking(obj: str, acl_object: str | None = None) -> dict[str, Needs]:
    acl = f"{acl_object or obj}.update.block"
    return {f"{obj} block": needs(acl), f"{obj} unblock": needs(acl)}


def _properties(obj: str) -> dict[str, Needs]:
    return {f"{obj} propset": needs(f"{obj}.update.properties-create",
                                    f"{obj}.update.properties-update"),
            f"{obj} propget": needs(f"{obj}.see.properties"),
            f"{obj} propdel": needs(f"{obj}.update.properties-delete")}


OPERATIONS: dict[str, Needs | None] = {
    **_standard("tenant"), **_blocking("tenant"),
    **_standard("user"), **_blocking("user"),
    "user passwd": needs("user.update.password"),
    "user token list": needs("user.see.tokens"),
    "user token del": needs("user.update.tokens-delete"),
    **_standard("osf"),
    **_standard("di"), **_blocking("di"),
    "di add": needs("di.create.", trusted="di.create.trusted"),
    "di tag": needs("di.update.tags"), "di untag": needs("di.update.tags"),
    **_standard("vm"), **_blocking("vm"),
    "vm add": needs("vm.create.", di_tag="vm.create.di-tag"),
    "vm start": needs("vm.update.state"), "vm stop": needs("vm.update.state"),
    "vm disconnect": needs("vm.update.disconnect-user"),
    "vm spy": needs("vm.spy.", interactive="vm.spy.interactive"),
    "vm rollout": needs("vm.see-main.", "di.see-main."),
    "vm edit": needs(name="vm.update.name", description="vm.update.description",
                     di_tag="vm.update.di-tag", expiration_soft="vm.update.expiration",
                     expiration_hard="vm.update.expiration"),
    **_standard("pool"), **_blocking("pool"),
    "pool edit": needs("pool.update.sizes"),
    "pool members": needs("pool.see-main.", add="pool.update.members",
                          **{"del": "pool.update.members"}),
    **_standard("host"), **_blocking("host"),
    "host stop": needs("host.update.stop-vms"),
    "host edit": needs("host.update.settings"),
    **{name: acl for obj in PROPERTY_OBJECTS for name, acl in _properties(obj).items()},
    "config get": needs("config.see-main."), "config list": needs("config.see-main."),
    "config set": needs("config.update."), "config del": needs("config.delete."),
    "config ssl": needs("config.update.ssl"),
    "session list": needs("session.see-main."),
    "log list": needs("log.see-main."),
    **_standard("admin", "administrator"), **_blocking("admin", "administrator"),
    "admin passwd": needs("administrator.update.password"),
    "admin role": needs("administrator.update.assign-role"),
    **_standard("role"),
    "role acl": needs(grant="role.update.assign-acl", deny="role.update.assign-acl",
                      revoke="role.update.assign-acl", grant_role="role.update.assign-role",
                      deny_role="role.update.assign-role",
                      revoke_role="role.update.assign-role"),
    "acl list": needs("acl.see-main."),
    **{f"db {verb}": LOCAL for verb in ("start", "stop", "status", "init", "upgrade")},
    **{f"system {verb}": LOCAL for verb in ("start", "stop")},
    "doctor run": LOCAL,
}

_unknown = sorted({name for need in OPERATIONS.values() if need
                   for name in [*need.acls, *need.by_argument.values()]} - set(ACLS))
if _unknown:  # a typo here would make an operation nobody can be granted
    raise ImportError(f"operations name ACLs missing from the catalogue: {_unknown}")
