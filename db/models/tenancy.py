"""Tenants, users, their auth tokens, and the administrators with their roles and ACLs."""
from datetime import datetime

from sqlalchemy import (BigInteger, Boolean, CheckConstraint, DateTime, ForeignKey, Integer,
                        Text, UniqueConstraint)
from sqlalchemy.dialects.postgresql import ARRAY, INET
from sqlalchemy.orm import Mapped, mapped_column

from .base import FALSE, NOW, TRUE, ZERO, Base

# Fixed tenants created by the first migration: -1 holds global configuration,
# 0 is the supertenant (administrators of every tenant), 1 is the default tenant.
GLOBAL_TENANT, SUPERTENANT, DEFAULT_TENANT = -1, 0, 1


class Tenant(Base):
    __tablename__ = "tenants"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(Text, unique=True)
    blocked: Mapped[bool] = mapped_column(Boolean, server_default=FALSE)
    description: Mapped[str | None] = mapped_column(Text)
    __table_args__ = (CheckConstraint("name <> ''", name="name_not_empty"),)


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="RESTRICT"))
    login: Mapped[str] = mapped_column(Text)
    # Argon2id PHC string, or QVD's legacy base64(sha256(salt+password)); NULL: external auth only.
    password: Mapped[str | None] = mapped_column(Text)
    blocked: Mapped[bool] = mapped_column(Boolean, server_default=FALSE)
    # The groups the directory named at the user's last LDAP password login (lower-case; see
    # auth.ldap.attr.groups): what entitles them to pools by group, tokens included.
    directory_groups: Mapped[list[str]] = mapped_column(ARRAY(Text), server_default="{}")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=NOW)
    __table_args__ = (UniqueConstraint("tenant_id", "login"),
                      CheckConstraint("login <> ''", name="login_not_empty"))


class UserToken(Base):
    """Bearer tokens from /qvd/create_auth_token; only their SHA-256 is stored."""
    __tablename__ = "user_tokens"
    token_hash: Mapped[str] = mapped_column(Text, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=NOW)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    # When the password login this token descends from ends: a token minted with a token
    # never outlives it. Blocking the user, `user passwd` and `user token del` delete the rows.
    login_expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    uses: Mapped[int] = mapped_column(Integer, server_default=ZERO)
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    __table_args__ = (CheckConstraint("expires_at > created_at", name="expires_after_creation"),
                      CheckConstraint("expires_at <= login_expires_at", name="within_login"))


class Administrator(Base):
    """An administrator of one tenant (tenant 0, `*`: of every tenant); `name@tenant` logs in."""
    __tablename__ = "administrators"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="RESTRICT"))
    name: Mapped[str] = mapped_column(Text)
    password: Mapped[str | None] = mapped_column(Text)  # Argon2id PHC string (db/passwords.py)
    blocked: Mapped[bool] = mapped_column(Boolean, server_default=FALSE)
    # Base32 TOTP secret (RFC 6238, pyotp); NULL: the password alone logs in.
    totp_secret: Mapped[str | None] = mapped_column(Text)
    # The 30 s step of the last code accepted: a code is good once (RFC 6238 §5.2).
    totp_last_step: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=NOW)
    __table_args__ = (UniqueConstraint("tenant_id", "name"),
                      CheckConstraint("name <> ''", name="name_not_empty"))


class AdminToken(Base):
    """qvd-api's bearer tokens (POST /api/v1/login); only their SHA-256 is stored. Blocking or
    deleting the administrator ends them (checked on each request; deletion cascades)."""
    __tablename__ = "admin_tokens"
    token_hash: Mapped[str] = mapped_column(Text, primary_key=True)
    administrator_id: Mapped[int] = mapped_column(
        ForeignKey("administrators.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=NOW)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    client_address: Mapped[str | None] = mapped_column(INET)


class Role(Base):
    __tablename__ = "roles"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(Text, unique=True)
    fixed: Mapped[bool] = mapped_column(Boolean, server_default=FALSE)
    internal: Mapped[bool] = mapped_column(Boolean, server_default=FALSE)
    description: Mapped[str | None] = mapped_column(Text)


class Acl(Base):
    __tablename__ = "acls"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(Text, unique=True)
    description: Mapped[str | None] = mapped_column(Text)


class RoleAdministratorRelation(Base):
    __tablename__ = "role_administrator_relations"
    role_id: Mapped[int] = mapped_column(ForeignKey("roles.id", ondelete="CASCADE"),
                                         primary_key=True)
    administrator_id: Mapped[int] = mapped_column(
        ForeignKey("administrators.id", ondelete="CASCADE"), primary_key=True)


class AclRoleRelation(Base):
    __tablename__ = "acl_role_relations"
    acl_id: Mapped[int] = mapped_column(ForeignKey("acls.id", ondelete="CASCADE"),
                                        primary_key=True)
    role_id: Mapped[int] = mapped_column(ForeignKey("roles.id", ondelete="CASCADE"),
                                         primary_key=True)
    positive: Mapped[bool] = mapped_column(Boolean)


class RoleRoleRelation(Base):
    """The inheritor includes the inherited role's ACLs, or, not positive, is denied them all."""
    __tablename__ = "role_role_relations"
    inheritor_id: Mapped[int] = mapped_column(ForeignKey("roles.id", ondelete="CASCADE"),
                                              primary_key=True)
    inherited_id: Mapped[int] = mapped_column(ForeignKey("roles.id", ondelete="CASCADE"),
                                              primary_key=True)
    positive: Mapped[bool] = mapped_column(Boolean, server_default=TRUE)
    __table_args__ = (CheckConstraint("inheritor_id <> inherited_id", name="no_self_inheritance"),)


