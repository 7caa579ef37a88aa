"""Failed logins, per login and per client address, for the L7R's back-off. Shared by all
of a node's connection processes and by all nodes, hence in the database."""
from datetime import datetime

from sqlalchemy import DateTime, Integer, Text
from sqlalchemy.orm import Mapped, mapped_column

from .base import NOW, ZERO, Base


class AuthFailure(Base):
    __tablename__ = "auth_failures"
    key: Mapped[str] = mapped_column(Text, primary_key=True)  # "login:alice@acme" / "address:ip"
    failures: Mapped[int] = mapped_column(Integer, server_default=ZERO)
    last_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=NOW)
