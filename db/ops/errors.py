"""The one kind of error an operation raises, with a message a person understands.

Every front end shows the message as it is and maps the class: the CLI to its exit status
(BadRequest 2, the others 1), the API to an HTTP status (422, 404, 409).
"""
from __future__ import annotations


class DomainError(Exception):
    """The operation was refused or failed because of what was asked (a conflict)."""


class BadRequest(DomainError):
    """The request itself is malformed: an unknown key, a missing argument, a bad number."""


class NotFound(DomainError):
    """Nothing matches what the request names."""


class UploadCut(DomainError):
    """A file being received ended before its announced end."""


# Database invariants (constraint name -> what the admin did wrong).
CONSTRAINT_MESSAGES = {
    "uq_tenants_name": "a tenant with that name already exists",
    "uq_users_tenant_id_login": "a user with that login already exists in the tenant",
    "uq_osfs_tenant_id_name": "an OSF with that name already exists in the tenant",
    "uq_dis_osf_id_version": "the OSF already has a DI with that version",
    "uq_dis_path": "that image file is already registered",
    "uq_di_tags_osf_id_tag": "another DI of the OSF already has that tag",
    "uq_vms_user_id_name": "the user already has a VM with that name",
    "uq_vms_ip": "another VM already has that IP address",
    "uq_pools_tenant_id_name": "a pool with that name already exists in the tenant",
    "uq_vms_pool_id_name": "the pool already has a VM with that name",
    "fk_pools_osf_id": "pools still use the OSF; delete them first",
    "fk_pools_tenant_id": "the tenant still has pools; delete them first",
    "fk_vms_tenant_id": "the tenant still has VMs; delete them first",
    "uq_hosts_name": "a host with that name already exists",
    "uq_hosts_address": "another host already has that address",
    "uq_hosts_vm_address": "another host already has that vm_address: each node needs its "
                           "own address on the VM network",
    "fk_users_tenant_id": "the tenant still has users; delete them first",
    "fk_osfs_tenant_id": "the tenant still has OSFs; delete them first",
    "fk_administrators_tenant_id": "the tenant still has administrators",
    "fk_vms_user_id": "the user still has VMs; delete them first",
    "fk_vms_osf_id": "the OSF is still used by VMs; delete them first",
    "fk_dis_osf_id": "the OSF still has DIs; delete them first",
    "fk_vm_runtimes_host_id": "VMs are still assigned to the host; stop them first",
    "fk_vm_runtimes_current_di_id": "a running VM uses the DI; stop it first",
    "ck_osfs_memory_positive": "memory must be a positive number of MiB",
    "ck_osfs_storage_not_negative": "user_storage must not be negative",
    "ck_di_tags_tag_format": "a tag may only contain letters, digits, '.', '_' and '-'",
}


def describe_db_error(exc: Exception) -> str | None:
    """A sentence for a constraint violation, or None if it is not one we know."""
    diag = getattr(getattr(exc, "orig", None), "diag", None)
    if diag is None:
        return None
    known = CONSTRAINT_MESSAGES.get(diag.constraint_name or "")
    if known:
        return known
    if diag.message_primary:
        detail = f" ({diag.message_detail})" if diag.message_detail else ""
        return f"the database refused the change: {diag.message_primary}{detail}"
    return None
