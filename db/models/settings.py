"""Configuration stored in the database: per tenant (-1: global) and TLS material."""
from sqlalchemy import CheckConstraint, ForeignKey, Text
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base


class ConfigEntry(Base):
    __tablename__ = "configs"
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"),
                                           primary_key=True)
    key: Mapped[str] = mapped_column(Text, primary_key=True)
    value: Mapped[str] = mapped_column(Text)
    __table_args__ = (CheckConstraint("key <> ''", name="key_not_empty"),)


class SslConfig(Base):
    """PEM texts of the L7R: keys l7r.ssl.cert, l7r.ssl.key, l7r.ssl.ca."""
    __tablename__ = "ssl_configs"
    key: Mapped[str] = mapped_column(Text, primary_key=True)
    value: Mapped[str] = mapped_column(Text)
