"""qvd-vma, the agent inside each VM: `GET /vma/<method>?k=v` answers JSON.

Methods: ping, x_state, x_start, x_prepare, x_suspend, x_stop, poweroff, expire (agent.py).
Sessions are VNC (Xvnc) or NX (nxagent), chosen by the property vma.session.type. It must
not import qvd.db: it runs inside the image.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import signal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from . import desktop, secret
from .agent import Agent, BadRequest
from .relay import DesktopRelay
from .session import SessionError

log = logging.getLogger("qvd.vma")
METHODS = ("ping", "x_state", "x_start", "x_prepare", "x_suspend", "x_stop", "poweroff",
           "expire")


def default_session(in_vm: bool) -> list[str] | None:
    """The session command when vma.x_session is unset. Inside a VM (--provision: LXC, a KVM
    image) QVD's desktop (desktop.py) when its pieces are installed, else Xfce, else an xterm.
    Without --provision the agent runs on the node as the node's user (the process backend:
    development, and the tests, which start hundreds of sessions): an xterm, cheap to start;
    vma.x_session=desktop asks for the whole desktop there."""
    if in_vm and not desktop.missing():
        return [desktop.KEYWORD]
    for program in ("startxfce4", "xterm") if in_vm else ("xterm",):
        if shutil.which(program):
            return [program]
    return None


class Handler(BaseHTTPRequestHandler):
    agent: Agent
    secret: str
    protocol_version = "HTTP/1.1"

    def do_GET(self):  # noqa: N802 - http.server's naming
        url = urlsplit(self.path)
        method = url.path.removeprefix("/vma/")
        if not secret.matches(secret.from_header(self.headers.get(secret.HEADER)), self.secret):
            log.warning("refused %s from %s: no valid node secret", method[:40],
                        self.address_string())
            return self._reply(401, {"error": "this agent answers its node only"})
        if not url.path.startswith("/vma/") or method not in METHODS:
            return self._reply(404, {"error": f"unknown method {method!r}",
                                     "methods": list(METHODS)})
        try:
            params = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True,
                                                     strict_parsing=True, errors="strict").items()}
        except (ValueError, UnicodeDecodeError):
            return self._reply(400, {"error": "the query string cannot be parsed"})
        try:
            self._reply(200, getattr(self.agent, method)(params))
        except BadRequest as exc:
            self._reply(400, {"error": str(exc)})
        except SessionError as exc:
            self._reply(409, {"error": str(exc)})
        except Exception as exc:  # noqa: BLE001 - a bug answers 500 and the agent carries on
            log.exception("%s failed", method)
            self._reply(500, {"error": f"internal error in {method}: {exc}"})

    def _refuse(self):
        self._reply(405, {"error": f"method {self.command} not allowed, use GET"})

    do_POST = do_PUT = do_DELETE = do_PATCH = _refuse  # noqa: N815

    def _reply(self, status: int, body: dict) -> None:
        """The whole response, head and body, in one write (one segment for the node to
        wait for, not two with Nagle between them)."""
        data = json.dumps(body).encode()
        self.log_request(status)
        head = (f"{self.protocol_version} {status} {self.responses.get(status, ('',))[0]}\r\n"
                f"Server: {self.version_string()}\r\nDate: {self.date_time_string()}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n")
        self.wfile.write(head.encode("latin-1") + data)

    def log_message(self, fmt, *args):
        log.debug("%s " + fmt, self.address_string(), *args)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="qvd-vma", description=__doc__.splitlines()[0])
    parser.add_argument("--address", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=3030)
    parser.add_argument("--x-port", type=int, default=4100, help="desktop session port")
    parser.add_argument("--session", help="command run in the desktop when vma.x_session is "
                                          "not set; 'desktop' is QVD's own (default: that "
                                          "desktop with --provision when installed, else xterm)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--secret-file",
                        help="file with the secret the node made for this run of the VM: "
                             "every call must carry it (LXC: /run/qvd-vma.secret)")
    source.add_argument("--secret-from-smbios", action="store_true",
                        help="read that secret from the SMBIOS OEM strings (KVM guests)")
    parser.add_argument("--log", help="log file (default: standard error)")
    parser.add_argument("--dhcp", action="store_true",
                        help="configure eth0 by DHCP before listening (the VM's first process)")
    parser.add_argument("--provision", action="store_true",
                        help="run sessions as the qvd.vm.user.* account, created if missing "
                             "(inside a VM: never on a shared machine)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s qvd-vma %(message)s",
                        filename=args.log)
    if args.dhcp:
        from . import dhcp
        try:
            dhcp.configure()
        except RuntimeError as exc:
            log.error("%s", exc)
            raise SystemExit(1) from None
    try:
        Handler.secret = secret.read_smbios() if args.secret_from_smbios else \
            secret.read_file(args.secret_file)
    except (OSError, ValueError) as exc:
        log.error("cannot read the node's secret: %s", exc)
        raise SystemExit(1) from None
    agent = Handler.agent = Agent(args.session.split() if args.session else
                                  default_session(args.provision),
                                  provision=args.provision)
    DesktopRelay(args.address, args.x_port, Handler.secret, agent.desktop_socket).start()

    def terminate(*_):
        agent.session.stop_and_wait()
        os._exit(0)
    signal.signal(signal.SIGTERM, terminate)
    server = ThreadingHTTPServer((args.address, args.port), Handler)
    log.info("listening on %s:%d", args.address, args.port)
    server.serve_forever()


if __name__ == "__main__":
    main()
