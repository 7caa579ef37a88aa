"""qvd-hkd's keeper of the L7R acceptor, in process: starts that overlap leave one acceptor.
The acceptor is a real process (`sleep`, so that no port is involved), found through the real
pid file."""
import asyncio
import subprocess
import types

from qvd.hkd import l7r_runner
from qvd.hkd.backends.procfs import alive
from qvd.hkd.node_life import NodeLife


class SlowDatabase:
    """The certificate comes back after a while, as from a busy server."""
    async def fetch(self, query):
        await asyncio.sleep(0.1)
        return [{"key": "l7r.ssl.cert", "value": "CERT"}, {"key": "l7r.ssl.key", "value": "KEY"}]


class Settings(dict):
    db_global: dict = {}

    def get_bool(self, key):
        return self[key] == "1"


def test_a_certificate_and_key_reloaded_together_leave_one_acceptor(tmp_path, monkeypatch):
    started, popen = [], subprocess.Popen

    def acceptor(argv, **options):  # the real Popen, of a process that just waits
        proc = popen(["sleep", "30"], **options)
        started.append(proc)
        return proc
    monkeypatch.setattr(l7r_runner.subprocess, "Popen", acceptor)
    life = NodeLife("node1")
    life.fire("joined")
    node = types.SimpleNamespace(name="node1", run_dir=str(tmp_path / "run"), life=life,
                                 db=SlowDatabase(),
                                 cfg=Settings({"l7r.use_ssl": "1", "path.log": str(tmp_path)}))
    (tmp_path / "run").mkdir()
    runner = l7r_runner.L7rRunner(node)

    async def reloads():  # the cert and the key change: two restarts, and the periodic check
        await asyncio.gather(runner.restart(), runner.restart(), runner.ensure())
    try:
        asyncio.run(reloads())
        live = [proc.pid for proc in started if alive(proc.pid)]
        assert live == [runner.pidfile.running()]  # one acceptor, the one the pid file names
    finally:
        for proc in started:
            proc.kill()
            proc.wait()
