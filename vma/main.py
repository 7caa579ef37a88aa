"""qvd-vma, the agent inside each VM: `GET /vma/<method>?k=v` answers JSON.

ping, poweroff, expire, and VNC desktop sessions (x_state, x_start, x_stop). NX sessions,
user provisioning, hooks and the session timeouts come with the agent's own issue. It must
not import qvd.db: it runs inside the image.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from .vnc_session import VncSession, default_session

log = logging.getLogger("qvd.vma")


class Agent:
    def __init__(self, address: str = "127.0.0.1", x_port: int = 4100,
                 session_command: list[str] | None = None) -> None:
        self.started = time.time()
        self.expiration: dict[str, str] = {}
        self.session = VncSession(address, x_port)
        self.session_command = session_command

    def ping(self, params):
        return {"status": "ok", "uptime": round(time.time() - self.started, 3)}

    def x_state(self, params):
        return {"x_state": self.session.refresh()}

    def x_start(self, params):
        try:
            return {"x_state": self.session.start(params, self.session_command)}
        except RuntimeError as exc:
            return {"error": str(exc), "x_state": self.session.refresh()}

    def x_stop(self, params):
        self.session.stop()
        return {"x_state": "stopped"}

    def expire(self, params):
        self.expiration = {k: v for k, v in params.items() if k in ("soft", "hard")}
        log.info("expiration announced: %s", self.expiration)
        return {"status": "ok"}

    def poweroff(self, params):
        # Answer first, then "power off": this agent is the VM's main process.
        self.session.stop()
        threading.Timer(0.1, os._exit, args=(0,)).start()
        return {"status": "ok"}


class Handler(BaseHTTPRequestHandler):
    agent: Agent
    protocol_version = "HTTP/1.1"

    def do_GET(self):  # noqa: N802 - http.server's naming
        url = urlsplit(self.path)
        method = url.path.removeprefix("/vma/")
        params = {k: v[-1] for k, v in parse_qs(url.query).items()}
        action = getattr(self.agent, method, None) if url.path.startswith("/vma/") else None
        if action is None or method.startswith("_"):
            self._reply(404, {"error": f"unknown method '{method}'"})
        else:
            self._reply(200, action(params))

    def _reply(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, fmt, *args):
        log.debug("%s " + fmt, self.address_string(), *args)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="qvd-vma", description=__doc__.splitlines()[0])
    parser.add_argument("--address", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=3030)
    parser.add_argument("--x-port", type=int, default=4100, help="desktop session port")
    parser.add_argument("--session", help="command run in the desktop (default: a desktop "
                                          "or xterm if installed)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s qvd-vma %(message)s")
    Handler.agent = Agent(args.address, args.x_port,
                          args.session.split() if args.session else default_session())
    signal.signal(signal.SIGTERM, lambda *_: (Handler.agent.session.stop(), os._exit(0)))
    server = ThreadingHTTPServer((args.address, args.port), Handler)
    log.info("listening on %s:%d", args.address, args.port)
    server.serve_forever()


if __name__ == "__main__":
    main()
