"""A real qvd-api process for the tests: TLS with a test certificate, on a free loopback
port, against a test database; stopped by its PID."""
from __future__ import annotations

import http.client
import json
import os
import ssl
import subprocess
import sys
import time
from pathlib import Path

from qvd.hkd.backends.process import free_port
from qvd.hkd.pidfile import end_child

from tests_tls import write_pair

QVD_API = os.path.join(os.path.dirname(sys.executable), "qvd-api")


class Reply:
    def __init__(self, status: int, headers, body: bytes):
        self.status, self.headers, self.body = status, headers, body

    def json(self):
        return json.loads(self.body)


class ApiProcess:
    def __init__(self, env, workdir: Path):
        self.env, self.port = env, free_port()
        cert, key, _ = write_pair(workdir)
        # Uploads up to 1 MiB: the tests go past it with little data.
        env.write_conf(f"api.address = 127.0.0.1\napi.port = {self.port}\n"
                       "api.upload.max_size = 1\n")
        self.log = open(workdir / "api.log", "wb")
        self.process = subprocess.Popen([QVD_API, "--cert", cert, "--key", key],
                                        env=env.env(), stdout=self.log,
                                        stderr=subprocess.STDOUT)
        self.context = ssl.create_default_context(cafile=cert)
        self.context.check_hostname = False
        self._wait_until_serving(workdir)

    def _wait_until_serving(self, workdir: Path) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError("qvd-api exited: " + (workdir / "api.log").read_text())
            try:
                if self.call("GET", "/api/v1/openapi.json").status == 200:
                    return
            except OSError:
                time.sleep(0.05)  # the port is not open yet: poll it
        raise RuntimeError("qvd-api did not answer within 30 s")

    def call(self, method: str, path: str, body=None, token: str | None = None,
             raw: bytes | None = None, headers: dict | None = None) -> Reply:
        conn = http.client.HTTPSConnection("127.0.0.1", self.port, context=self.context,
                                           timeout=30)
        sent = {"Content-Type": "application/json", **(headers or {})}
        if token:
            sent["Authorization"] = f"Bearer {token}"
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None
                                            else None)
        try:
            conn.request(method, path, body=data, headers=sent)
            reply = conn.getresponse()
            return Reply(reply.status, reply.headers, reply.read())
        finally:
            conn.close()

    def login(self, login: str, password: str, totp: str | None = None) -> str:
        reply = self.call("POST", "/api/v1/login", {"login": login, "password": password,
                                                    **({"totp": totp} if totp else {})})
        assert reply.status == 200, reply.body
        return reply.json()["token"]

    def stop(self) -> None:
        end_child(self.process, 10)
        self.log.close()
