"""A real qvd-vma process on loopback for tests that talk to the agent directly."""
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from urllib.parse import urlencode

from hkd_nodes import wait_for
from qvd.hkd.backends.process import free_port
from qvd.hkd.backends.procfs import alive
from qvd.hkd.pidfile import end_child

QVD_VMA = os.path.join(os.path.dirname(sys.executable), "qvd-vma")


class Agent:
    def __init__(self, log_path: str, session: str | None = None):
        self.port, self.x_port = free_port(), free_port()
        args = [QVD_VMA, "--address", "127.0.0.1", "--port", str(self.port),
                "--x-port", str(self.x_port)] + (["--session", session] if session else [])
        self.log_path = log_path
        with open(log_path, "ab") as log:
            self.proc = subprocess.Popen(args, stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                                         start_new_session=True)
        wait_for(lambda: self.call("ping")[0] == 200, 10, "qvd-vma to answer")

    def call(self, method: str, **params) -> tuple[int, dict]:
        url = f"http://127.0.0.1:{self.port}/vma/{method}?{urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=10) as reply:
                return reply.status, json.load(reply)
        except urllib.error.HTTPError as exc:
            return exc.code, json.load(exc)
        except OSError:
            return 0, {}

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
