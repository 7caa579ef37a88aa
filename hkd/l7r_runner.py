"""qvd-hkd keeps the node's L7R acceptor (qvd-l7r) running: started after the node runs,
restarted when it dies or the certificate changes, stopped (children untouched) at the end.
Why an acceptor could not start (port in use, unusable certificate: its status file) goes to
the host row's last_error, once per new reason, and is taken back once it listens."""
from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys

from qvd.l7r import start_status

from .database import DbUnavailable
from .pidfile import PidFile

log = logging.getLogger(__name__)

TLS_FILES = {"l7r.ssl.cert": "l7r-cert.pem", "l7r.ssl.key": "l7r-key.pem"}
# What the acceptor itself reads; the per-connection processes read the rest afresh.
ACCEPTOR_KEYS = ("l7r.ssl.", "l7r.address", "l7r.port", "l7r.use_ssl", "l7r.max_connections",
                 "l7r.prefork", "l7r.limits.", "l7r.timeout.", "l7r.proxy_protocol.", "l7r.database.")


class L7rRunner:
    def __init__(self, node):
        self.node = node
        self.proc: subprocess.Popen | None = None
        self.pidfile = PidFile(os.path.join(node.run_dir, f"l7r-{node.name}.pid"))
        self.status_file = start_status.status_path(node.run_dir, node.name)
        self.noted: str | None = None  # the failure on the host row, as written there
        self._warned = False
        # One start at a time: two (a reload of the certificate and of its key, say) would both
        # pass the pid file check while they read the database, and one acceptor would leak.
        self._starting = asyncio.Lock()

    async def _tls_arguments(self) -> list[str] | None:
        cfg, run_dir = self.node.cfg, self.node.run_dir
        if not cfg.get_bool("l7r.use_ssl"):
            return []
        rows = await self.node.db.fetch("SELECT key, value FROM ssl_configs WHERE key IN "
                                        "('l7r.ssl.cert', 'l7r.ssl.key')")
        pem = {row["key"]: row["value"] for row in rows}
        if len(pem) < 2:
            if not self._warned:
                log.warning("no L7R certificate stored ('qvd-admin config ssl'): "
                            "not accepting desktop clients")
                self._warned = True
            return None
        arguments = []
        for key, name in TLS_FILES.items():
            path = os.path.join(run_dir, name)
            with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
                f.write(pem[key])
            arguments += [f"--{key.rsplit('.', 1)[1]}", path]
        return arguments

    async def ensure(self) -> None:
        async with self._starting:
            await self._ensure()

    async def restart(self) -> None:
        async with self._starting:
            self.stop()
            await self._ensure()

    async def _report(self) -> None:
        """The acceptor's last start, on the host row: its failure, or that it is gone."""
        status = start_status.read(self.status_file)
        try:
            if status == start_status.LISTENING and self.noted:
                await self.node.hosts.clear_error(self.noted)
                self.noted = None
            elif status not in (None, start_status.LISTENING) and \
                    f"qvd-l7r: {status}" != self.noted:
                self.noted = f"qvd-l7r: {status}"
                log.error("node %s: %s", self.node.name, self.noted)
                await self.node.hosts.note_error(self.noted)
        except DbUnavailable:
            self.noted = None  # written again once the database is back

    async def _ensure(self) -> None:
        await self._report()
        if self.proc is not None and self.proc.poll() is not None:
            log.warning("qvd-l7r exited (status %s): restarting it", self.proc.returncode)
            self.proc = None
        if self.pidfile.running() is not None:
            return  # ours, or one a previous qvd-hkd left running: adopted as it is
        try:
            arguments = await self._tls_arguments()
        except DbUnavailable:
            return
        if arguments is None or not self.node.life.serving:
            return  # the node fenced itself or began stopping while we read the database
        log_path = os.path.join(self.node.cfg.get("path.log"), f"l7r-{self.node.name}.log")
        os.makedirs(os.path.dirname(log_path), exist_ok=True)
        l7r = os.path.join(os.path.dirname(sys.executable), "qvd-l7r")
        start_status.clear(self.status_file)  # the new one says how it went; self.noted dedups
        with open(log_path, "ab") as logfile:
            self.proc = subprocess.Popen([l7r, *arguments, *self._settings(),
                                          f"--status-file={self.status_file}"],
                                         stdin=subprocess.DEVNULL, stdout=logfile,
                                         stderr=logfile, start_new_session=True)
        self.pidfile.record(self.proc.pid)
        log.info("qvd-l7r started (pid %d)", self.proc.pid)

    def _settings(self) -> list[str]:
        """The acceptor reads the node file itself; the database's global layer (which wins
        over it) reaches it as arguments."""
        cfg = self.node.cfg
        return [f"--set={name}={value}" for name, value in sorted(cfg.db_global.items())
                if self.affected_by(name) and not name.startswith("l7r.ssl.")]

    def stop(self) -> None:
        """Stop accepting; connections already served (their own processes) go on."""
        self.pidfile.stop()
        if self.proc is not None:
            self.proc.wait(5)  # reap it
        self.proc = None

    @staticmethod
    def affected_by(key: str) -> bool:
        return key.startswith(ACCEPTOR_KEYS)
