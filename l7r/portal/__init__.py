"""The browser portal, served by the L7R on its own port next to the QVD protocol's /qvd/
paths: a login page, the user's desktops, and the HTML5 client (noVNC) whose WebSocket tunnel
runs the same connect steps as a QVD client's connect_to_vm. On when l7r.portal.enabled."""
from __future__ import annotations

from . import assets, pages, tunnel

# (method, path) -> handler(session, request)
ROUTES = {
    ("GET", "/"): pages.index,
    ("POST", "/portal/login"): pages.log_in,
    ("POST", "/portal/logout"): pages.log_out,
    ("POST", "/portal/stop"): pages.stop,
    ("GET", "/portal/desktop"): pages.desktop,
    ("GET", "/portal/desktops.json"): pages.desktops_json,
    ("GET", "/portal/tunnel"): tunnel.tunnel,
}
# path prefixes served by one handler (GET)
PREFIXES = {prefix: assets.static for prefix in assets.FOLDERS}
