"""A real qvd-vma process on loopback for tests that talk to the agent directly."""
import json
import os
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from urllib.parse import urlencode

from hkd_nodes import wait_for
from qvd.hkd.backends.process import free_port
from qvd.hkd.backends.procfs import alive
from qvd.hkd.pidfile import end_child
from qvd.vma import secret
from qvd.vma.relay import pump

QVD_VMA = os.path.join(os.path.dirname(sys.executable), "qvd-vma")


class Agent:
    def __init__(self, log_path: str, session: str | None = None):
        self.port, self.x_port = free_port(), free_port()
        self.secret = secret.new_secret()
        secret_file = log_path + ".secret"
        secret.write_file(secret_file, self.secret, os.getuid(), os.getgid())
        args = [QVD_VMA, "--address", "127.0.0.1", "--port", str(self.port),
                "--x-port", str(self.x_port), "--secret-file", secret_file] + \
            (["--session", session] if session else [])
        self.log_path = log_path
        with open(log_path, "ab") as log:
            self.proc = subprocess.Popen(args, stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                                         start_new_session=True)
        wait_for(lambda: self.call("ping")[0] == 200, 10, "qvd-vma to answer")

    def call(self, method: str, _secret: str | None = None, **params) -> tuple[int, dict]:
        """The agent's answer to a call signed as the node does (or with _secret)."""
        url = f"http://127.0.0.1:{self.port}/vma/{method}?{urlencode(params)}"
        request = urllib.request.Request(url, headers=secret.bearer(
            self.secret if _secret is None else _secret))
        try:
            with urllib.request.urlopen(request, timeout=10) as reply:
                return reply.status, json.load(reply)
        except urllib.error.HTTPError as exc:
            return exc.code, json.load(exc)
        except OSError:
            return 0, {}

    def desktop(self) -> socket.socket:
        """A connection to the desktop port, past the relay as the L7R gets there."""
        conn = socket.create_connection(("127.0.0.1", self.x_port), timeout=10)
        conn.sendall(secret.relay_greeting(self.secret))
        return conn

    def desktop_forwarder(self) -> int:
        """A loopback port that forwards to the desktop port with the node's greeting (what
        the L7R does), for clients that cannot send it themselves (nxproxy)."""
        listener = socket.create_server(("127.0.0.1", 0))

        def serve():
            while True:
                client, _ = listener.accept()
                desktop = self.desktop()
                threading.Thread(target=pump, args=(desktop, client), daemon=True).start()
                threading.Thread(target=pump, args=(client, desktop), daemon=True).start()
        threading.Thread(target=serve, daemon=True).start()
        return listener.getsockname()[1]

    def state(self) -> str:
        return self.call("x_state")[1].get("x_state")

    def wait_state(self, state: str, timeout: float = 15) -> None:
        wait_for(lambda: self.state() == state, timeout, f"session state {state}")

    def log(self) -> str:
        with open(self.log_path, encoding="utf-8", errors="replace") as handle:
            return handle.read()

    def children(self) -> list[int]:
        """PIDs of the processes in the agent's session (Xvnc, nxagent, the desktop...)."""
        found = []
        for entry in os.listdir("/proc"):
            if entry.isdigit() and int(entry) != self.proc.pid:
                try:
                    with open(f"/proc/{entry}/stat", encoding="utf-8") as handle:
                        ppid = int(handle.read().rsplit(")", 1)[1].split()[1])
                except (OSError, ValueError, IndexError):
                    continue
                if ppid == self.proc.pid and alive(int(entry)):
                    found.append(int(entry))
        return found

    def stop(self) -> None:
        end_child(self.proc, 15)


def call_as_node(demo, method: str = "ping", vm_id: int | None = None,
                 offered: str | None = None, **params) -> tuple[int, dict]:
    """(status, answer) of a running VM's agent called as its node does: at the address, port
    and secret the database holds for it (or with the secret `offered`)."""
    where = "" if vm_id is None else f" AND vm_id = {int(vm_id)}"
    (address, port, value), = demo.sql("SELECT host(vm_address), vm_vma_port, vma_secret "
                                       f"FROM vm_runtimes WHERE vm_address IS NOT NULL{where}")
    request = urllib.request.Request(f"http://{address}:{port}/vma/{method}?{urlencode(params)}",
                                     headers=secret.bearer(value if offered is None else offered))
    try:
        with urllib.request.urlopen(request, timeout=5) as reply:
            return reply.status, json.load(reply)
    except urllib.error.HTTPError as exc:
        return exc.code, json.load(exc)
