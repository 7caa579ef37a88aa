"""The WAT's static files: our own stylesheet and script (static/), and the npm packages the
install script puts in node_modules/ (htmx and its Server-Sent Events extension, noVNC), served
locally so that no page loads anything from another site."""
from __future__ import annotations

import logging
from pathlib import Path

from fastapi.staticfiles import StaticFiles

HERE = Path(__file__).resolve().parent
NODE_MODULES = HERE.parent / "node_modules"
# URL under /wat/vendor/ -> the built files of an npm package.
VENDOR = {"htmx": NODE_MODULES / "htmx.org" / "dist",
          "htmx-sse": NODE_MODULES / "htmx-ext-sse" / "dist",
          "novnc": NODE_MODULES / "@novnc" / "novnc"}  # the desktop watching page

log = logging.getLogger("qvd.wat")


def missing() -> list[str]:
    return [str(path) for path in VENDOR.values() if not path.is_dir()]


def install(app) -> None:
    app.state.wat_assets_missing = missing()
    if app.state.wat_assets_missing:  # shown on every page too (web.page)
        log.error("the WAT's npm assets are missing (%s): run scripts/install-deps.sh",
                  ", ".join(app.state.wat_assets_missing))
    app.mount("/wat/static", StaticFiles(directory=HERE / "static"), name="wat-static")
    for name, path in VENDOR.items():
        app.mount(f"/wat/vendor/{name}", StaticFiles(directory=path, check_dir=False),
                  name=f"wat-vendor-{name}")
