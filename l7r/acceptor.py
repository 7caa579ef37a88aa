"""qvd-l7r, the acceptor: listens on l7r.address:l7r.port and gives each client connection a
process of its own: one of the l7r.prefork ready children it keeps forked ahead (prefork.py:
database connection open and warm), passed the socket, or else a child forked for it. It has
no threads and no database connection. Started and restarted by qvd-hkd; its serving
children outlive it (live desktops), ready ones end with it.

It knows its children and their client addresses: a new connection beyond
`l7r.max_connections`, or beyond `l7r.max_connections.per_address` from one address, is
handed to a short-lived refusing child that does the TLS handshake (under its deadline) and
answers 503; connections already served are untouched. Refusing children have their own
small cap (REFUSERS): beyond it a new connection is simply closed.

It counts its connections by result (connection_counts.py: from each child's exit status
as it reaps it) in a file qvd-hkd exports, carried over the acceptor's own restarts."""
from __future__ import annotations

import argparse
import gc
import logging
import os
import select
import signal
import socket
import ssl
import sys
import time

from qvd.db import config as qconfig

from . import connection_counts, prefork, start_status
from .connection import child_db, refuse_connection, serve_connection, tune_socket
from .endpoints import set_title
from .proxy_protocol import ProxyHeaderError, client_address, trusted
from .tls import server_context

log = logging.getLogger("qvd.l7r")

REFUSERS = 32  # refusing children (handshake + 503) alive at once, at most
ACCEPT_PAUSE = 0.1  # seconds after a failed accept (EMFILE): not a busy loop
# Seconds after a hand-over before the ready child it used is forked again, while others are
# left: a new ready child's fork, PostgreSQL login and warm-up would otherwise take the CPU
# from the client just handed over, in the very milliseconds of its connect.
REFILL_PAUSE = 0.2


class Acceptor:
    def __init__(self, cfg, tls, balancers: set[str] = frozenset(),
                 counts_file: str | None = None):
        self.cfg, self.tls, self.balancers = cfg, tls, balancers
        self.counts_file = counts_file
        self.results = connection_counts.read(counts_file)  # a previous acceptor's, carried on
        self._saved_drops = self.results["dropped"]
        self.children: dict[int, str] = {}   # pid -> client address of the served connections
        self.per_address: dict[str, int] = {}
        self.refusers: set[int] = set()
        self.ready: dict[int, socket.socket] = {}  # pid -> channel of the ready children
        self.prefork = cfg.get_int("l7r.prefork")
        self.refill_at = 0.0  # time.monotonic() from which missing ready children are forked
        self.max_children = cfg.get_int("l7r.max_connections")
        self.max_per_address = cfg.get_int("l7r.max_connections.per_address")

    def _forget(self, pid: int) -> None:
        self.refusers.discard(pid)
        channel = self.ready.pop(pid, None)
        if channel is not None:
            channel.close()
        address = self.children.pop(pid, None)
        if address is not None:
            left = self.per_address.get(address, 1) - 1
            if left:
                self.per_address[address] = left
            else:
                self.per_address.pop(address, None)

    def _count(self, pid: int, status: int) -> bool:
        if pid in self.refusers:
            result = "refused"
        elif pid not in self.children:
            return False
        elif os.WIFSIGNALED(status):
            result = "killed"
        else:
            result = "served" if os.WEXITSTATUS(status) == 0 else "failed"
        self.results[result] += 1
        return True

    def save_counts(self) -> None:
        if not self.counts_file:
            return
        try:
            connection_counts.write(self.counts_file, self.results)
        except OSError as exc:
            log.warning("connection counts not written to %s: %s", self.counts_file, exc)

    def reap(self, *_):
        # Not re-entered by the next child's SIGCHLD: the counts are read, then written.
        held = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGCHLD})
        try:
            self._reap()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, held)

    def _reap(self) -> None:
        counted = self.results["dropped"] != self._saved_drops
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                self.children.clear()
                self.per_address.clear()
                self.refusers.clear()
                for channel in self.ready.values():
                    channel.close()
                self.ready.clear()
                break
            if pid == 0:
                break
            counted = self._count(pid, status) or counted
            self._forget(pid)
        if counted:
            self._saved_drops = self.results["dropped"]
            self.save_counts()

    def refusal(self, address: str) -> str | None:
        """Why a new connection from `address` is refused (None: it is served)."""
        if len(self.children) >= self.max_children:
            return "this node serves as many connections as it may"
        if address not in self.balancers and \
                self.per_address.get(address, 0) >= self.max_per_address:
            return "too many connections from your address"
        return None

    def serve(self, listener: socket.socket) -> None:
        signal.signal(signal.SIGCHLD, self.reap)
        set_title(f"qvd-l7r acceptor {self.cfg.get('nodename')} "
                  f"{self.cfg.get('l7r.address')}:{self.cfg.get('l7r.port')}")
        # The resolver's modules (NSS), which libpq's connects load at their first lookup:
        # loaded once here rather than in each child.
        socket.getaddrinfo("localhost", None)
        # What the acceptor built so far (modules, TLS context) is shared by every child:
        # keep the collector's bookkeeping from writing to (and so copying) those pages.
        gc.collect()
        gc.freeze()
        while True:
            if not self.wait_for_client(listener):
                self.refill(listener)
                continue
            try:
                conn, address = listener.accept()
            except (InterruptedError, ConnectionAbortedError):
                continue  # a client that reset before being accepted
            except OSError as exc:  # out of descriptors or buffers: that client, not the node
                log.error("cannot accept a connection: %s", exc)
                time.sleep(ACCEPT_PAUSE)  # its cause needs a moment (children ending) to clear
                continue
            peer = address[0]
            reason = self.refusal(peer)
            if reason is not None and len(self.refusers) >= REFUSERS:
                conn.close()  # refusing is itself bounded: close cheaply, serve the others
                self.results["dropped"] += 1  # written at the next reap: a refuser ends soon
                continue
            # SIGCHLD held from the fork until the child is recorded: reaped before being
            # recorded, it would be counted forever.
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGCHLD})
            try:
                if reason is None and self.hand_over(conn, peer):
                    continue
                try:
                    pid = os.fork()
                except OSError as exc:  # out of processes or memory: this client is lost
                    log.error("cannot serve a connection from %s: %s", peer, exc)
                    self.results["failed"] += 1
                    conn.close()
                    continue
                if pid == 0:
                    self._close_inherited(listener)
                    self._child_signals()
                    self._child(conn, peer, reason)
                if reason is None:
                    self._serving(pid, peer)
                else:
                    self.refusers.add(pid)
                    log.info("refused a connection from %s: %s", peer, reason)
            finally:
                signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGCHLD})
                conn.close()

    def _serving(self, pid: int, peer: str) -> None:
        self.children[pid] = peer
        self.per_address[peer] = self.per_address.get(peer, 0) + 1

    def hand_over(self, conn: socket.socket, peer: str) -> bool:
        """Pass the client to a ready child (SIGCHLD held: one reaped meanwhile would be
        counted as serving forever); False when none is left."""
        while self.ready:
            pid, channel = self.ready.popitem()
            try:
                socket.send_fds(channel, [peer.encode("utf-8")], [conn.fileno()])
            except OSError:  # it ended meanwhile: its exit is reaped as any
                continue
            finally:
                channel.close()
            self._serving(pid, peer)
            self.refill_at = time.monotonic() + (REFILL_PAUSE if self.ready else 0.0)
            return True
        return False

    def wait_for_client(self, listener) -> bool:
        """Whether a client waits on the listener, once it does or ready children are due
        to be forked again (refill_at)."""
        timeout = None
        if len(self.ready) < self.prefork:
            timeout = max(0.0, self.refill_at - time.monotonic())
            if timeout == 0.0:
                return False
        readable, _, _ = select.select([listener], [], [], timeout)
        return bool(readable)

    def refill(self, listener) -> None:
        """Fork ready children up to l7r.prefork (a fork that fails leaves fewer, for a
        moment: clients then get a fork of their own)."""
        while len(self.ready) < self.prefork:
            ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGCHLD})
            try:
                try:
                    pid = os.fork()
                except OSError as exc:
                    log.error("cannot fork a ready child: %s", exc)
                    ours.close()
                    self.refill_at = time.monotonic() + ACCEPT_PAUSE  # not a busy loop
                    return
                if pid == 0:
                    ours.close()
                    self._close_inherited(listener)
                    self._ready_child(theirs)
                self.ready[pid] = ours
            finally:
                signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGCHLD})
                theirs.close()

    def _close_inherited(self, listener) -> None:
        """In a new child: the listener and the ready children's channels are the acceptor's
        (held here, a channel would never tell its ready child that the acceptor ended)."""
        listener.close()
        for channel in self.ready.values():
            channel.close()

    def _ready_child(self, channel: socket.socket) -> None:
        self._child_signals()
        set_title(prefork.READY_TITLE)
        try:
            db = child_db(self.cfg, prefork.READY_TITLE)
            prefork.warm(db)
            client = prefork.wait_for_client(channel, db)
        except SystemExit:  # SIGTERM while waiting: never unwind into the acceptor's loop
            os._exit(0)
        except BaseException:  # noqa: BLE001 - a ready child that fails is one fewer, no more
            log.exception("ready child failed")
            os._exit(1)
        if client is None:  # the acceptor ended
            os._exit(0)
        self._child(*client, None, db)

    @staticmethod
    def _child_signals() -> None:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGCHLD})
        # Ended on request (takeover, vm disconnect): unwind so the session row closes.
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))

    def _child(self, conn, peer: str, reason: str | None, db=None) -> None:
        """Serve (or refuse) one client, then exit; db: a ready child's warm database."""
        status = 0
        try:
            tune_socket(conn)
            if peer in self.balancers:  # the real client's address, before anything else
                try:
                    peer = client_address(conn, peer, self.cfg.get_float("l7r.timeout.handshake"))
                except ProxyHeaderError as exc:
                    log.info("connection from load balancer %s closed: %s", peer, exc)
                    return
            if reason is None:
                serve_connection(conn, peer, self.cfg, self.tls, db)
            else:
                refuse_connection(conn, peer, self.cfg, self.tls, reason)
        except Exception:  # noqa: BLE001 - one client's failure is logged, nothing more
            log.exception("connection from %s failed", peer)
            status = 1
        finally:
            os._exit(status)


class StartError(Exception):
    """The acceptor cannot start; the message is the sentence for the host row."""


def listen(cfg) -> socket.socket:
    address, port = cfg.get("l7r.address"), cfg.get_int("l7r.port")
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((address, port))
        listener.listen(128)
    except OSError as exc:
        listener.close()
        raise StartError(f"cannot listen on {address}:{port}: {exc.strerror or exc}; free the "
                         f"port or set l7r.port (or l7r.address) to another") from None
    return listener


def tls_context(cert: str, key: str) -> ssl.SSLContext:
    try:
        return server_context(cert, key)
    except (ssl.SSLError, OSError) as exc:
        reason = getattr(exc, "reason", None)  # e.g. KEY_VALUES_MISMATCH; None for bad PEM
        why = (reason.lower().replace("_", " ") if reason else "not a PEM certificate and key"
               if isinstance(exc, ssl.SSLError) else exc.strerror or str(exc))
        raise StartError(f"the L7R certificate or key cannot be used ({why}); store a valid "
                         f"pair with 'qvd-admin config ssl --cert FILE --key FILE'") from None


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="qvd-l7r", description=__doc__.splitlines()[0])
    parser.add_argument("--cert", help="PEM certificate (required unless l7r.use_ssl = 0)")
    parser.add_argument("--key", help="PEM private key")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a setting of the database's global layer (qvd-hkd passes the "
                             "acceptor's own: it has no database connection)")
    parser.add_argument("--status-file", help="written with 'listening', or the one-line "
                                              "reason it could not start (read by qvd-hkd)")
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
            tls = tls_context(args.cert, args.key)
        try:
            balancers = trusted(cfg)
        except ValueError as exc:
            raise qconfig.ConfigError(f"l7r.proxy_protocol.trusted: {exc}") from None
        listener = listen(cfg)
    except (qconfig.ConfigError, StartError, OSError) as exc:
        print(f"qvd-l7r: {exc}", file=sys.stderr)
        start_status.write(args.status_file, str(exc))
        sys.exit(1)
    start_status.write(args.status_file, start_status.LISTENING)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    Acceptor(cfg, tls, balancers,
             connection_counts.counts_path(args.status_file) if args.status_file else None
             ).serve(listener)


if __name__ == "__main__":
    main()
