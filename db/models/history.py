"""What happened: desktop sessions and changes made by administrators.

Rows outlive the objects they name (ids are SET NULL, names are copied), so history stays
readable after a user or VM is deleted.
"""
from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, DateTime, ForeignKey, Integer, Text, text
from sqlalchemy.dialects.postgresql import INET, JSONB
from sqlalchemy.orm import Mapped, mapped_column

from .base import NOW, ZERO, Base, in_list


class DesktopSession(Base):
    __tablename__ = "sessions"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"),
                                                index=True)
    login: Mapped[str] = mapped_column(Text)
    vm_id: Mapped[int | None] = mapped_column(ForeignKey("vms.id", ondelete="SET NULL"),
                                              index=True)
    vm_name: Mapped[str] = mapped_column(Text)
    host_id: Mapped[int | None] = mapped_column(ForeignKey("hosts.id", ondelete="SET NULL"))
    host_name: Mapped[str] = mapped_column(Text)
    client_address: Mapped[str | None] = mapped_column(INET)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=NOW)
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    bytes_from_client: Mapped[int] = mapped_column(BigInteger, server_default=ZERO)
    bytes_to_client: Mapped[int] = mapped_column(BigInteger, server_default=ZERO)
    end_reason: Mapped[str | None] = mapped_column(Text)
    __table_args__ = (CheckConstraint("ended_at IS NULL OR ended_at >= started_at",
                                      name="ends_after_start"),)


AUDIT_SOURCES = ("cli", "api", "wat", "l7r")
AUDIT_STATUSES = ("ok", "refused", "failed")


class AdminLogEntry(Base):
    """One change, or one refused or failed attempt (db/audit.py writes them)."""
    __tablename__ = "admin_log"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=NOW, index=True)
    who: Mapped[str] = mapped_column(Text)          # name@tenant, local:<unix user>, qvd-l7r
    administrator_id: Mapped[int | None] = mapped_column(
        ForeignKey("administrators.id", ondelete="SET NULL"))
    tenant_id: Mapped[int | None] = mapped_column(Integer)  # the tenant acted on
    object: Mapped[str] = mapped_column(Text)       # vm, user, ...
    action: Mapped[str] = mapped_column(Text)       # add, del, start ...
    arguments: Mapped[dict] = mapped_column(JSONB)  # filters and key=value arguments, redacted
    object_ids: Mapped[list] = mapped_column(JSONB)  # ids of the objects changed
    source: Mapped[str | None] = mapped_column(Text)  # NULL: written before 0007
    client_address: Mapped[str | None] = mapped_column(INET)  # NULL: a local run
    status: Mapped[str] = mapped_column(Text, server_default=text("'ok'"))
    error: Mapped[str | None] = mapped_column(Text)
    __table_args__ = (CheckConstraint(in_list("source", AUDIT_SOURCES), name="source_known"),
                      CheckConstraint(in_list("status", AUDIT_STATUSES), name="status_known"))
