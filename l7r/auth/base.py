"""The authentication chain: find the tenant and login, then each plugin in turn."""
from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field


@dataclass
class Identity:
    user_id: int
    login: str
    tenant_id: int
    tenant: str
    extra: dict[str, str] = field(default_factory=dict)  # e.g. uid/gid/home from LDAP
    token_hash: str | None = None  # the bearer token this identity came with (None: a password)


class AuthFailed(Exception):
    """401: the credentials do not open this door (the message is logged, never sent)."""


@dataclass
class Credentials:
    scheme: str          # "basic" or "bearer"
    login: str = ""      # without the tenant
    tenant: str = "default"
    password: str = ""
    token: str = ""


def split_login(login: str) -> tuple[str, str]:
    """login@tenant or login#tenant (QVD); the default tenant when none is named."""
    for separator in ("@", "#"):
        if separator in login:
            name, _, tenant = login.rpartition(separator)
            return name, tenant
    return login, "default"


def scheme_of(header: str) -> str:
    """An Authorization header's scheme, lower-case: basic, bearer, or whatever it says."""
    return header.strip().partition(" ")[0].lower()


def parse_authorization(header: str) -> Credentials:
    scheme, value = scheme_of(header), header.strip().partition(" ")[2]
    if scheme == "basic":
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise AuthFailed("undecodable Basic credentials") from None
        login, sep, password = decoded.partition(":")
        if not sep or not login:
            raise AuthFailed("Basic credentials without login:password")
        name, tenant = split_login(login)
        # Surrounding whitespace is never part of a login (nor of a tenant's name).
        name, tenant = name.strip(), tenant.strip()
        if not name:
            raise AuthFailed("Basic credentials with an empty login")
        return Credentials("basic", name, tenant, password)
    if scheme == "bearer" and value.strip():
        token = value.strip()
        try:  # QVD clients send base64(token); accept the token itself too
            decoded = base64.b64decode(token, validate=True).decode("ascii")
            if decoded.isprintable():
                token = decoded
        except (binascii.Error, UnicodeDecodeError):
            pass
        return Credentials("bearer", token=token)
    raise AuthFailed("no usable Authorization header")
