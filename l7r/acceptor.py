"""qvd-l7r, the acceptor: listens on l7r.address:l7r.port and forks one process per client
connection. It has no threads and no database connection (each child opens its own after
the fork). Started and restarted by qvd-hkd; its children outlive it (live desktops)."""
from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import sys

from qvd.db import config as qconfig

from .connection import serve_connection
from .endpoints import set_title
from .tls import server_context

log = logging.getLogger("qvd.l7r")


class Acceptor:
    def __init__(self, cfg, tls):
        self.cfg, self.tls = cfg, tls
        self.children: set[int] = set()
        self.max_children = cfg.get_int("l7r.max_connections")

    def reap(self, *_):
        while self.children:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                self.children.clear()
                return
            if pid == 0:
                return
            self.children.discard(pid)

    def serve(self, listener: socket.socket) -> None:
        signal.signal(signal.SIGCHLD, self.reap)
        set_title(f"qvd-l7r acceptor {self.cfg.get('nodename')} "
                  f"{self.cfg.get('l7r.address')}:{self.cfg.get('l7r.port')}")
        while True:
            try:
                conn, address = listener.accept()
            except InterruptedError:
                continue
            if len(self.children) >= self.max_children:
                conn.close()  # over the limit: refuse cheaply, keep serving the others
                continue
            pid = os.fork()
            if pid == 0:
                listener.close()
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                # Ended on request (takeover, vm disconnect): unwind so the session row closes.
                signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
                status = 0
                try:
                    serve_connection(conn, address[0], self.cfg, self.tls)
                except Exception:  # noqa: BLE001 - one client's failure is logged, nothing more
                    log.exception("connection from %s failed", address[0])
                    status = 1
                finally:
                    os._exit(status)
            self.children.add(pid)
            conn.close()


def listen(cfg) -> socket.socket:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((cfg.get("l7r.address"), cfg.get_int("l7r.port")))
    listener.listen(128)
    return listener


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="qvd-l7r", description=__doc__.splitlines()[0])
    parser.add_argument("--cert", help="PEM certificate (required unless l7r.use_ssl = 0)")
    parser.add_argument("--key", help="PEM private key")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a setting of the database's global layer (qvd-hkd passes the "
                             "acceptor's own: it has no database connection)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s qvd-l7r[%(process)d] %(levelname)s %(message)s")
    try:
        cfg = qconfig.load()
        for setting in args.set:
            name, _, value = setting.partition("=")
            cfg.db_global[name] = qconfig.validate(name, value)
        tls = None
        if cfg.get_bool("l7r.use_ssl"):
            if not (args.cert and args.key):
                raise qconfig.ConfigError("l7r.use_ssl is on: --cert and --key are required")
            tls = server_context(args.cert, args.key)
        listener = listen(cfg)
    except (qconfig.ConfigError, OSError) as exc:
        print(f"qvd-l7r: {exc}", file=sys.stderr)
        sys.exit(1)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    Acceptor(cfg, tls).serve(listener)


if __name__ == "__main__":
    main()
