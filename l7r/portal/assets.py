"""The portal's static files: our stylesheet and scripts (static/) and noVNC's ES modules, from
the npm package the install script puts in node_modules/@novnc/novnc (never copied here).
Only regular files under those two folders, with a known type, are served: a path that climbs
out (`..`, a symlink) is not found."""
from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote

from ..http import HttpError, Request

HERE = Path(__file__).resolve().parent
NOVNC = HERE.parent.parent / "node_modules" / "@novnc" / "novnc"
FOLDERS = {"/portal/static/": HERE / "static", "/portal/novnc/": NOVNC}
TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
         ".png": "image/png", ".svg": "image/svg+xml", ".woff2": "font/woff2"}


def file_for(path: str) -> Path:
    for prefix, root in FOLDERS.items():
        if path.startswith(prefix):
            wanted = (root / unquote(path[len(prefix):])).resolve()
            if wanted.is_relative_to(root.resolve()) and wanted.is_file() and \
                    wanted.suffix in TYPES:
                return wanted
    raise HttpError(404, "Not Found\n")


def static(session, req: Request) -> None:
    path = file_for(req.path)
    session.http.respond(200, path.read_bytes(),
                         [("Cache-Control", "max-age=3600"), ("X-Content-Type-Options", "nosniff")],
                         content_type=TYPES[path.suffix])


def missing() -> list[str]:
    """What `doctor` and the portal's pages report when the install script was not run."""
    return [] if (NOVNC / "core" / "rfb.js").is_file() else [str(NOVNC)]
