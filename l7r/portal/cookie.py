"""The portal's session: an auth token (the token plugin's, with its lifecycle: it expires,
and a password change, a block or `qvd-admin user token del` revokes it) in an HttpOnly,
Secure, SameSite=Strict cookie; and the same-origin rule for everything that changes state."""
from __future__ import annotations

from ..auth import Identity
from ..http import HttpError, Request

COOKIE = "qvd_portal"


def set_cookie(token: str, seconds: int) -> tuple[str, str]:
    return ("Set-Cookie", f"{COOKIE}={token}; Max-Age={seconds}; Path=/; Secure; HttpOnly; "
                          "SameSite=Strict")


def clear_cookie() -> tuple[str, str]:
    return ("Set-Cookie", f"{COOKIE}=; Max-Age=0; Path=/; Secure; HttpOnly; SameSite=Strict")


def same_origin(req: Request, required: bool = False) -> bool:
    """The request comes from our own pages: its Origin names this server. Browsers send
    Origin on every POST and every WebSocket; `required`: a request without one is refused
    too (a WebSocket always has one)."""
    origin = req.header("origin")
    if not origin:
        return not required
    return origin == f"https://{req.header('host')}"


def portal_token(req: Request) -> str | None:
    return req.cookie(COOKIE) or None


def require_portal_user(session, req: Request) -> Identity:
    """The user the cookie's token names; 401 (HttpError) when there is none, or it is
    forged, expired or revoked (counted by the back-off like any failed login)."""
    token = portal_token(req)
    if token is None:
        raise HttpError(401, "Log in first\n")
    return session.authenticate(f"Bearer {token}")
