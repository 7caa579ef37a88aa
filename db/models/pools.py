"""Desktop pools: VMs made from one OSF and DI tag, handed out to the users entitled to them."""
from datetime import datetime

from sqlalchemy import (Boolean, CheckConstraint, DateTime, ForeignKey, Integer, Text,
                        UniqueConstraint)
from sqlalchemy.orm import Mapped, mapped_column

from .base import FALSE, NOW, ZERO, Base, in_list

ASSIGNMENTS = ("persistent", "throwaway")


class Pool(Base):
    """min VMs always exist, `spare` of them are kept running with no user, never more than
    max in all. The pool keeper (hkd/pool_keeper.py) writes last_reason: what it did last and
    why, or why it could not."""
    __tablename__ = "pools"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="RESTRICT"))
    name: Mapped[str] = mapped_column(Text)
    osf_id: Mapped[int] = mapped_column(ForeignKey("osfs.id", ondelete="RESTRICT"))
    di_tag: Mapped[str] = mapped_column(Text, server_default="default")
    min: Mapped[int] = mapped_column(Integer, server_default=ZERO)
    max: Mapped[int] = mapped_column(Integer)
    spare: Mapped[int] = mapped_column(Integer, server_default=ZERO)
    assignment: Mapped[str] = mapped_column(Text, server_default="persistent")
    # Its VMs' names: {pool} and {n} (a number never given twice in the pool) are replaced.
    vm_names: Mapped[str] = mapped_column(Text, server_default="{pool}-{n}")
    vms_made: Mapped[int] = mapped_column(Integer, server_default=ZERO)  # the last {n}
    blocked: Mapped[bool] = mapped_column(Boolean, server_default=FALSE)
    description: Mapped[str | None] = mapped_column(Text)
    last_reason: Mapped[str | None] = mapped_column(Text)
    last_reason_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=NOW)
    __table_args__ = (
        UniqueConstraint("tenant_id", "name"),
        CheckConstraint("name <> ''", name="name_not_empty"),
        CheckConstraint(in_list("assignment", ASSIGNMENTS), name="assignment"),
        CheckConstraint("min >= 0 AND spare >= 0 AND max >= 1 AND min <= max AND spare <= max",
                        name="sizes"),
    )


class PoolMember(Base):
    """A user entitled to the pool's desktops."""
    __tablename__ = "pool_members"
    pool_id: Mapped[int] = mapped_column(ForeignKey("pools.id", ondelete="CASCADE"),
                                         primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"),
                                         primary_key=True, index=True)


class PoolGroup(Base):
    """A directory group entitled to the pool: its users (as the LDAP plugin last saw them,
    users.directory_groups) may use it. Names are kept lower-case: LDAP compares them so."""
    __tablename__ = "pool_groups"
    pool_id: Mapped[int] = mapped_column(ForeignKey("pools.id", ondelete="CASCADE"),
                                         primary_key=True)
    name: Mapped[str] = mapped_column(Text, primary_key=True)
    __table_args__ = (CheckConstraint("name <> '' AND name = lower(name)", name="name_lower"),)
