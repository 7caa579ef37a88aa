"""What qvd-client does with the desktop stream once the server answered 101."""
from __future__ import annotations

import os
import select
import shutil
import socket
import subprocess
import sys

from qvd.l7r.proxy import Traffic, splice

from .errors import ClientError
from .png import write_png
from .rfb import RfbError, screenshot


def _listener(address: str) -> socket.socket:
    host, _, port = address.rpartition(":")
    try:
        server = socket.create_server((host or "127.0.0.1", int(port)))
    except ValueError:
        raise ClientError(f"--listen wants ADDRESS:PORT, not {address!r}") from None
    except OSError as exc:
        raise ClientError(f"Cannot listen on {address}: {exc}") from None
    return server


def _accept_while_tunnel_open(server: socket.socket, tunnel: socket.socket,
                              early: bytes) -> tuple[socket.socket, bytes]:
    """Wait for the local viewer; keep what the desktop says meanwhile, and give up if the
    server ends the session first (another client took the desktop over)."""
    while True:
        ready, _, _ = select.select([server, tunnel], [], [])
        if server in ready:
            local, _ = server.accept()
            server.close()
            return local, early
        data = tunnel.recv(65536)
        if not data:
            server.close()
            raise ClientError("The server ended the session before a viewer connected "
                              "(was the desktop opened from another client?).")
        early += data


def _serve_one(server: socket.socket, tunnel: socket.socket, early: bytes) -> None:
    """Accept one local client and carry the stream both ways until either side closes."""
    local, early = _accept_while_tunnel_open(server, tunnel, early)
    with local:
        reason = splice(tunnel, local, Traffic(), early)
    print(f"qvd-client: desktop closed ({reason})", file=sys.stderr)


def run_listen(tunnel: socket.socket, early: bytes, address: str) -> None:
    server = _listener(address)
    host, port = server.getsockname()[:2]
    print(f"qvd-client: desktop ready on {host}:{port} (point a VNC viewer at it)",
          file=sys.stderr, flush=True)
    _serve_one(server, tunnel, early)


def run_nxproxy(tunnel: socket.socket, early: bytes, args) -> None:
    """QVD clients' way: nxproxy -S connects to a local port that carries the tunnel."""
    nxproxy = shutil.which("nxproxy")
    if nxproxy is None:
        raise ClientError("nxproxy is not installed (Debian: apt install nxproxy).")
    if not os.environ.get("DISPLAY"):
        raise ClientError("nxproxy needs an X display: DISPLAY is not set.")
    server = _listener("127.0.0.1:0")
    port = server.getsockname()[1]
    options = ["nx/nx", f"connect=tcp:127.0.0.1:{port}"]
    if args.link:
        options.append(f"link={args.link}")
    proxy = subprocess.Popen([nxproxy, "-S", ",".join(options) + ":0"],
                             stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        _serve_one(server, tunnel, early)
    finally:
        if proxy.poll() is None:
            proxy.terminate()
        proxy.wait()


def run_screenshot(tunnel: socket.socket, early: bytes, path: str, settle: float) -> None:
    try:
        width, height, rgb = screenshot(tunnel, early, settle=settle)
    except RfbError as exc:
        raise ClientError(f"No picture: {exc} (is it a VNC session?)") from None
    write_png(path, width, height, rgb)
    print(f"qvd-client: saved {width}x{height} desktop picture to {path}", file=sys.stderr)
