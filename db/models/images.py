"""Operating system flavours (OSF), disk images (DI) and their tags."""
from datetime import datetime

from sqlalchemy import (Boolean, CheckConstraint, DateTime, ForeignKey, ForeignKeyConstraint,
                        Integer, Text, UniqueConstraint)
from sqlalchemy.orm import Mapped, mapped_column

from .base import FALSE, NOW, TRUE, Base


class Osf(Base):
    __tablename__ = "osfs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="RESTRICT"))
    name: Mapped[str] = mapped_column(Text)
    memory: Mapped[int] = mapped_column(Integer)  # MiB
    use_overlay: Mapped[bool] = mapped_column(Boolean, server_default=TRUE)
    user_storage_size: Mapped[int | None] = mapped_column(Integer)  # MiB; NULL: no home disk
    is_application: Mapped[bool] = mapped_column(Boolean, server_default=FALSE)
    description: Mapped[str | None] = mapped_column(Text)
    __table_args__ = (UniqueConstraint("tenant_id", "name"),
                      CheckConstraint("name <> ''", name="name_not_empty"),
                      CheckConstraint("memory > 0", name="memory_positive"),
                      CheckConstraint("user_storage_size >= 0", name="storage_not_negative"))


class Di(Base):
    __tablename__ = "dis"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    osf_id: Mapped[int] = mapped_column(ForeignKey("osfs.id", ondelete="RESTRICT"))
    path: Mapped[str] = mapped_column(Text)  # file name under <storage>/images
    version: Mapped[str] = mapped_column(Text)
    blocked: Mapped[bool] = mapped_column(Boolean, server_default=FALSE)
    # Unpacked without the hostile-image checks (device nodes, setuid bits): an admin's word.
    trusted: Mapped[bool] = mapped_column(Boolean, server_default=FALSE)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=NOW)
    __table_args__ = (UniqueConstraint("osf_id", "version"),
                      UniqueConstraint("id", "osf_id"),  # target of di_tags' composite key
                      UniqueConstraint("path"),
                      CheckConstraint("version <> ''", name="version_not_empty"))


class DiTag(Base):
    """A tag names one DI of an OSF; VMs start the DI their tag names at start time.

    osf_id is repeated here so that "one DI per tag and OSF" is a plain unique constraint;
    the composite foreign key keeps it equal to the DI's OSF.
    """
    __tablename__ = "di_tags"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    di_id: Mapped[int] = mapped_column(Integer)
    osf_id: Mapped[int] = mapped_column(Integer)
    tag: Mapped[str] = mapped_column(Text)
    fixed: Mapped[bool] = mapped_column(Boolean, server_default=FALSE)
    __table_args__ = (
        ForeignKeyConstraint(["di_id", "osf_id"], ["dis.id", "dis.osf_id"], ondelete="CASCADE"),
        UniqueConstraint("osf_id", "tag"),
        CheckConstraint("tag ~ '^[A-Za-z0-9._-]+$'", name="tag_format"),
    )
