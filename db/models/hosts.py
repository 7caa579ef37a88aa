"""Nodes of the cluster: definition, lease and state, counters."""
from datetime import datetime

from sqlalchemy import (BigInteger, Boolean, CheckConstraint, DateTime, Float, ForeignKey, Integer,
                        Text)
from sqlalchemy.dialects.postgresql import INET
from sqlalchemy.orm import Mapped, mapped_column

from ..states import HOST_CMDS, HOST_STATES
from .base import FALSE, TRUE, ZERO, Base, in_list


class Host(Base):
    __tablename__ = "hosts"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(Text, unique=True)
    address: Mapped[str] = mapped_column(INET, unique=True)
    # migration 0014: the node's own address on the VM network (its bridge, its VMs' gateway);
    # NULL: the network's first address (vm.network.gateway when set), as with one node
    vm_address: Mapped[str | None] = mapped_column(INET, unique=True)
    frontend: Mapped[bool] = mapped_column(Boolean, server_default=TRUE)
    backend: Mapped[bool] = mapped_column(Boolean, server_default=TRUE)
    __table_args__ = (CheckConstraint("name <> ''", name="name_not_empty"),)


class HostRuntime(Base):
    """The node's lease: ok_ts is renewed with the DB clock; epoch guards every renewal, so a
    node declared lost (epoch bumped by another node) learns it was fenced."""
    __tablename__ = "host_runtimes"
    host_id: Mapped[int] = mapped_column(ForeignKey("hosts.id", ondelete="CASCADE"),
                                         primary_key=True)
    pid: Mapped[int | None] = mapped_column(Integer)
    ok_ts: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    epoch: Mapped[int] = mapped_column(BigInteger, server_default=ZERO)
    usable_ram: Mapped[int | None] = mapped_column(Integer)  # MiB
    usable_cpu: Mapped[float | None] = mapped_column(Float)
    state: Mapped[str] = mapped_column(Text, server_default="stopped")
    blocked: Mapped[bool] = mapped_column(Boolean, server_default=FALSE)
    cmd: Mapped[str | None] = mapped_column(Text)
    last_error: Mapped[str | None] = mapped_column(Text)
    last_error_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    __table_args__ = (CheckConstraint(in_list("state", HOST_STATES), name="state"),
                      CheckConstraint(in_list("cmd", HOST_CMDS), name="cmd"))


class HostCounter(Base):
    __tablename__ = "host_counters"
    host_id: Mapped[int] = mapped_column(ForeignKey("hosts.id", ondelete="CASCADE"),
                                         primary_key=True)
    http_requests: Mapped[int] = mapped_column(BigInteger, server_default=ZERO)
    auth_attempts: Mapped[int] = mapped_column(BigInteger, server_default=ZERO)
    auth_ok: Mapped[int] = mapped_column(BigInteger, server_default=ZERO)
    auth_failed: Mapped[int] = mapped_column(BigInteger, server_default=ZERO)
    auth_throttled: Mapped[int] = mapped_column(BigInteger, server_default=ZERO)
    connection_attempts: Mapped[int] = mapped_column(BigInteger, server_default=ZERO)
    connection_ok: Mapped[int] = mapped_column(BigInteger, server_default=ZERO)
    short_sessions: Mapped[int] = mapped_column(BigInteger, server_default=ZERO)
    # migration 0011: the L7R's takeovers, and its ended sessions' bytes and seconds
    takeovers: Mapped[int] = mapped_column(BigInteger, server_default=ZERO)
    bytes_from_client: Mapped[int] = mapped_column(BigInteger, server_default=ZERO)
    bytes_to_client: Mapped[int] = mapped_column(BigInteger, server_default=ZERO)
    session_seconds: Mapped[float] = mapped_column(Float, server_default=ZERO)


class HostAuthCounter(Base):
    """Logins the L7R's plugin chain checked on a node, by plugin (qvd-hkd's metrics)."""
    __tablename__ = "host_auth_counters"
    host_id: Mapped[int] = mapped_column(ForeignKey("hosts.id", ondelete="CASCADE"),
                                         primary_key=True)
    plugin: Mapped[str] = mapped_column(Text, primary_key=True)
    attempts: Mapped[int] = mapped_column(BigInteger, server_default=ZERO)
    failures: Mapped[int] = mapped_column(BigInteger, server_default=ZERO)


class HostSessionEnd(Base):
    """Desktop sessions ended on a node by reason class and duration bucket (le: its upper
    bound in seconds), qvd-hkd's session histogram."""
    __tablename__ = "host_session_ends"
    host_id: Mapped[int] = mapped_column(ForeignKey("hosts.id", ondelete="CASCADE"),
                                         primary_key=True)
    reason: Mapped[str] = mapped_column(Text, primary_key=True)
    le: Mapped[float] = mapped_column(Float, primary_key=True)
    sessions: Mapped[int] = mapped_column(BigInteger, server_default=ZERO)
