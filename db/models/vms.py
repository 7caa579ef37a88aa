"""Virtual machines: definition (vms), what is happening to them (vm_runtimes), counters."""
from datetime import datetime

from sqlalchemy import (Boolean, CheckConstraint, DateTime, ForeignKey, Integer, Text,
                        UniqueConstraint)
from sqlalchemy.dialects.postgresql import INET
from sqlalchemy.orm import Mapped, mapped_column

from ..states import USER_CMDS, USER_STATES, VM_CMDS, VM_STATES
from .base import FALSE, NOW, ZERO, Base, in_list


class Vm(Base):
    __tablename__ = "vms"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(Text)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="RESTRICT"),
                                           index=True)
    # NULL: a pool's spare, nobody's yet (a VM outside pools always has its user).
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"))
    pool_id: Mapped[int | None] = mapped_column(ForeignKey("pools.id", ondelete="CASCADE"),
                                                index=True)
    osf_id: Mapped[int] = mapped_column(ForeignKey("osfs.id", ondelete="RESTRICT"))
    di_tag: Mapped[str] = mapped_column(Text, server_default="default")
    # A throw-away pool VM given back: its next start begins with a fresh home and overlay.
    discard_home: Mapped[bool] = mapped_column(Boolean, server_default=FALSE)
    ip: Mapped[str] = mapped_column(INET, unique=True)
    description: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=NOW)
    __table_args__ = (UniqueConstraint("user_id", "name"),
                      UniqueConstraint("pool_id", "name"),
                      UniqueConstraint("pool_id", "user_id"),  # one VM per user and pool
                      CheckConstraint("name <> ''", name="name_not_empty"),
                      CheckConstraint("pool_id IS NOT NULL OR user_id IS NOT NULL",
                                      name="owned_or_pooled"))


class VmRuntime(Base):
    """Desired state (vm_cmd, user_cmd: anyone writes) apart from observed state
    (vm_state: only the HKD of host_id; user_state: only the L7R of l7r_pid)."""
    __tablename__ = "vm_runtimes"
    vm_id: Mapped[int] = mapped_column(ForeignKey("vms.id", ondelete="CASCADE"), primary_key=True)
    host_id: Mapped[int | None] = mapped_column(ForeignKey("hosts.id", ondelete="RESTRICT"),
                                                index=True)
    vm_state: Mapped[str] = mapped_column(Text, server_default="stopped")
    vm_state_ts: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=NOW)
    vm_cmd: Mapped[str | None] = mapped_column(Text)
    vm_pid: Mapped[int | None] = mapped_column(Integer)
    user_state: Mapped[str] = mapped_column(Text, server_default="disconnected")
    user_state_ts: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=NOW)
    user_cmd: Mapped[str | None] = mapped_column(Text)
    l7r_host_id: Mapped[int | None] = mapped_column(ForeignKey("hosts.id", ondelete="SET NULL"))
    l7r_pid: Mapped[int | None] = mapped_column(Integer)
    vm_address: Mapped[str | None] = mapped_column(INET)
    vm_vma_port: Mapped[int | None] = mapped_column(Integer)
    vm_x_port: Mapped[int | None] = mapped_column(Integer)
    vm_vnc_port: Mapped[int | None] = mapped_column(Integer)
    vm_serial_port: Mapped[int | None] = mapped_column(Integer)
    blocked: Mapped[bool] = mapped_column(Boolean, server_default=FALSE)
    current_osf_id: Mapped[int | None] = mapped_column(ForeignKey("osfs.id", ondelete="SET NULL"))
    current_di_id: Mapped[int | None] = mapped_column(ForeignKey("dis.id", ondelete="RESTRICT"))
    expiration_soft: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    expiration_hard: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    vma_ok_ts: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # The key the node and the L7Rs sign their calls to the VM's agent with; new at each start.
    vma_secret: Mapped[str | None] = mapped_column(Text)
    failed_starts: Mapped[int] = mapped_column(Integer, server_default=ZERO)
    last_error: Mapped[str | None] = mapped_column(Text)
    last_error_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    __table_args__ = (
        CheckConstraint(in_list("vm_state", VM_STATES), name="vm_state"),
        CheckConstraint(in_list("vm_cmd", VM_CMDS), name="vm_cmd"),
        CheckConstraint(in_list("user_state", USER_STATES), name="user_state"),
        CheckConstraint(in_list("user_cmd", USER_CMDS), name="user_cmd"),
        # A VM that is not stopped, or is asked to start, belongs to a host.
        CheckConstraint("vm_state = 'stopped' OR host_id IS NOT NULL", name="active_has_host"),
        CheckConstraint("vm_cmd IS DISTINCT FROM 'start' OR host_id IS NOT NULL",
                        name="start_has_host"),
        CheckConstraint("user_state = 'disconnected' OR l7r_pid IS NOT NULL",
                        name="connection_has_l7r"),
    )


class VmCounter(Base):
    __tablename__ = "vm_counters"
    vm_id: Mapped[int] = mapped_column(ForeignKey("vms.id", ondelete="CASCADE"), primary_key=True)
    run_attempts: Mapped[int] = mapped_column(Integer, server_default=ZERO)
    run_ok: Mapped[int] = mapped_column(Integer, server_default=ZERO)
    run_failed: Mapped[int] = mapped_column(Integer, server_default=ZERO)
    connections: Mapped[int] = mapped_column(Integer, server_default=ZERO)
    short_sessions: Mapped[int] = mapped_column(Integer, server_default=ZERO)
