"""Cold connect benchmark (python -m bench.desktop_bench; part of make bench).

A stopped VM, then a client's connect: placement, the node starts the VM (process backend:
a qvd-vma process), the agent starts Xvnc, 101, the first desktop byte. Its floor, measured in
the same run: the backend's own start (spawn qvd-vma until it answers ping) plus Xvnc's own
start (spawn Xvnc until it accepts a viewer), each done directly, nothing else.
Only the process backend is measured: the other backends (vm.hypervisor lxc, kvm) are named in
the results as not measured until this tree has them and a benchmark for them.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

from qvd.client.rfb import Stream
from qvd.hkd.backends.process import free_port
from qvd.l7r.client import accepting
from qvd.vma import secret
from qvd.vma.session import free_display

from .common import Row, ms, summary, table
from .node import bench_node, wait


def raw_agent_start() -> float:
    port, x_port, value = free_port(), free_port(), secret.new_secret()
    secret_file = os.path.join(tempfile.gettempdir(), f"qvd-bench-{port}.secret")
    secret.write_file(secret_file, value, os.getuid(), os.getgid())
    began = time.perf_counter()
    agent = subprocess.Popen([sys.executable, "-m", "qvd.vma.main", "--address", "127.0.0.1",
                              "--port", str(port), "--x-port", str(x_port),
                              "--secret-file", secret_file], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    request = urllib.request.Request(f"http://127.0.0.1:{port}/vma/ping",
                                     headers=secret.bearer(value))
    try:
        def answers():
            try:
                with urllib.request.urlopen(request, timeout=1) as r:
                    return json.load(r)["status"] == "ok"
            except OSError:
                return False
        wait(answers, 30)
        return time.perf_counter() - began
    finally:
        agent.terminate()
        agent.wait()
        os.unlink(secret_file)


def raw_xvnc_start() -> float:
    port = free_port()
    began = time.perf_counter()
    xvnc = subprocess.Popen([shutil.which("Xvnc"), f":{free_display()}", "-rfbport", str(port),
                             "-interface", "127.0.0.1", "-SecurityTypes", "None", "-geometry",
                             "1024x768", "-depth", "24", "-nolisten", "tcp"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait(lambda: accepting("127.0.0.1", port, 0.2), 30)
        return time.perf_counter() - began
    finally:
        xvnc.terminate()
        xvnc.wait()


def run(count: int) -> dict:
    floor, cold = [], []
    with bench_node() as node:
        for _ in range(count):
            floor.append(raw_agent_start() + raw_xvnc_start())
            began = time.perf_counter()
            conn = node.connect_desktop()
            assert Stream(conn.sock, conn.buffer).read(4) == b"RFB "
            cold.append(time.perf_counter() - began)
            conn.close()
            wait(lambda: node.state(1)[1] == "disconnected")
            node.admin("vm", "stop", "-f", "name=desk0")
            wait(lambda: node.state(1)[0] == "stopped")
    return {"cold": summary(cold), "floor": summary(floor)}


def rows(result: dict) -> list[Row]:
    cold, floor = result["cold"], result["floor"]
    return [Row(f"cold_process_{label}", "cold connect (stopped VM, process backend) to the "
                f"first desktop byte, {label} (n={cold['n']})", cold[label] * 1000, "ms",
                floor[label] * 1000, "qvd-vma start + Xvnc start, done directly")
            for label in ("p50", "p99")]


def distributions(result: dict) -> dict:
    return {"cold_connect": ("cold connect (process backend) to the first desktop byte", "ms", {
        "qvd": ms(result["cold"]["samples"]),
        "qvd-vma start + Xvnc start, done directly": ms(result["floor"]["samples"])})}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=10)
    print(table(rows(run(parser.parse_args().count))))


if __name__ == "__main__":
    main()
