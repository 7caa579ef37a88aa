"""Desktop pools (issue 17): the pool object through qvd-admin; pool keeping on real
process-backend nodes; handing out through the L7R to many users at once."""
from __future__ import annotations

import json

POOL_ADD = ["pool", "add", "-t", "acme", "name=lab", "osf=desktop"]


def test_pool_cli_add_members_list_edit_block_del_and_bad_input(demo):
    out = demo.ok(*POOL_ADD, "min=2", "spare=1", "max=3")
    assert "pool 1 'lab' added (min 2, spare 1, max 3, persistent)" in out
    demo.ok("user", "add", "-t", "acme", "login=bob", "password=pw")
    demo.ok("pool", "members", "-t", "acme", "-f", "name=lab", "add=alice,bob")
    demo.ok("pool", "members", "-t", "acme", "-f", "name=lab", "del=bob")
    members = json.loads(demo.ok("pool", "members", "-t", "acme", "-f", "name=lab", "--json"))
    assert [(m["login"], m["vm"]) for m in members] == [("alice", None)]
    demo.ok("pool", "edit", "-t", "acme", "-f", "name=lab", "spare=2", "max=4")
    demo.ok("pool", "block", "-t", "acme", "-f", "name=lab")
    pool, = json.loads(demo.ok("pool", "list", "-t", "acme", "--json"))
    assert (pool["min"], pool["spare"], pool["max"], pool["members"], pool["vms"],
            pool["blocked"]) == (2, 2, 4, 1, 0, True)

    # Each mistake: one line on stderr, the exit status of its kind, nothing changed.
    before = demo.snapshot()
    for args, status, words in [
            (POOL_ADD + ["max=2", "min=3"], 2, "min (3) must not exceed max (2)"),
            (POOL_ADD + ["max=two"], 2, "max must be a whole number"),
            (POOL_ADD + ["max=2", "assignment=forever"], 2, "assignment must be persistent"),
            (POOL_ADD + ["max=2"], 1, "a pool with that name already exists"),
            (POOL_ADD[:4] + ["name=x", "osf=nope", "max=2"], 1, "unknown OSF 'nope'"),
            (["pool", "edit", "-t", "acme", "-f", "name=lab", "min=9"], 2,
             "min (9) must not exceed max (4)"),
            (["pool", "members", "-t", "acme", "-f", "name=lab", "add=nobody"], 1,
             "unknown user 'nobody'")]:
        result = demo.cli(*args)
        assert (result.returncode, result.stderr.count("\n")) == (status, 1), (args, result)
        assert words in result.stderr and "Traceback" not in result.stderr, result.stderr
    demo.take_failed_changes()
    assert demo.snapshot() == before

    demo.ok("pool", "del", "-t", "acme", "-f", "name=lab")
    assert demo.sql("SELECT count(*) FROM pools")[0][0] == 0
