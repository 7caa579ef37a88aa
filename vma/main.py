"""qvd-vma, the agent inside each VM: `GET /vma/<method>?k=v` answers JSON.

For now the minimal agent the node daemon needs (ping, poweroff, expire, x_state); desktop
sessions come with their own issue. It must not import qvd.db: it runs inside the image.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

log = logging.getLogger("qvd.vma")


class Agent:
    def __init__(self) -> None:
        self.started = time.time()
        self.expiration: dict[str, str] = {}

    def ping(self, params):
        return {"status": "ok", "uptime": round(time.time() - self.started, 3)}

    def x_state(self, params):
        return {"x_state": "stopped"}

    def expire(self, params):
        self.expiration = {k: v for k, v in params.items() if k in ("soft", "hard")}
        log.info("expiration announced: %s", self.expiration)
        return {"status": "ok"}

    def poweroff(self, params):
        # Answer first, then "power off": this agent is the VM's main process.
        threading.Timer(0.1, os._exit, args=(0,)).start()
        return {"status": "ok"}


class Handler(BaseHTTPRequestHandler):
    agent: Agent = Agent()
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
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s qvd-vma %(message)s")
    server = ThreadingHTTPServer((args.address, args.port), Handler)
    log.info("listening on %s:%d", args.address, args.port)
    server.serve_forever()


if __name__ == "__main__":
    main()
