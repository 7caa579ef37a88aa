"""Every admin mistake: one line on stderr, a non-zero exit, no traceback, nothing changed."""
import os

import pytest

RUNNING = ("UPDATE host_runtimes SET state = 'running', ok_ts = now(), usable_ram = 4096; "
           "UPDATE vm_runtimes SET host_id = (SELECT id FROM hosts), vm_state = 'running'")
VM_ADD = ["vm", "add", "-t", "acme", "name=new", "user=alice", "osf=desktop"]

CASES = [
    # (name, setup SQL, arguments, exit status, words expected on stderr, stdin)
    ("unknown object", None, ["flurb", "list"], 2, "No such command 'flurb'", None),
    ("unknown verb", None, ["vm", "explode"], 2, "No such command 'explode'", None),
    ("not key=value", None, ["tenant", "add", "name"], 2, "expected key=value", None),
    ("missing key", None, ["vm", "add", "name=x", "user=alice@acme"], 2, "missing osf=", None),
    ("unknown key", None, ["osf", "add", "-t", "acme", "name=x", "colour=red"], 2,
     "unknown key 'colour'", None),
    ("unknown filter key", None, ["vm", "list", "-f", "colour=red"], 2, "unknown key 'colour'",
     None),
    ("duplicate tenant", None, ["tenant", "add", "name=acme"], 1, "already exists", None),
    ("duplicate vm name", None, VM_ADD[:4] + ["name=desk"] + VM_ADD[5:], 1,
     "already has a VM with that name", None),
    ("duplicate login", None, ["user", "add", "login=alice@acme"], 1, "already exists", None),
    ("unknown tenant", None, ["user", "add", "-t", "nope", "login=bob"], 1,
     "unknown tenant 'nope'", None),
    ("unknown user", None, VM_ADD[:5] + ["user=bob", "osf=desktop"], 1, "unknown user 'bob'",
     None),
    ("unknown osf", None, VM_ADD[:6] + ["osf=nope"], 1, "unknown OSF 'nope'", None),
    ("unknown tag", None, VM_ADD + ["di_tag=nope"], 1, "no DI tagged 'nope'", None),
    ("invalid ip", None, VM_ADD + ["ip=10.0.0.999"], 1, "not an IPv4 address", None),
    ("ip outside the VM network", None, VM_ADD + ["ip=192.168.1.1"], 1, "outside", None),
    ("ip in use", None, VM_ADD + ["ip=10.0.0.100"], 1, "already has that IP", None),
    ("invalid memory", None, ["osf", "add", "-t", "acme", "name=x", "memory=lots"], 2,
     "memory must be a whole number", None),
    ("negative memory", None, ["osf", "add", "-t", "acme", "name=x", "memory=-5"], 2,
     "memory must be positive", None),
    ("bulk zero", None, VM_ADD + ["bulk=0"], 2, "bulk must be positive", None),
    ("missing image file", None, ["di", "add", "-t", "acme", "path=/no/such.tar", "osf=desktop"],
     1, "image file not found", None),
    ("quotes and semicolons in a filter", None,
     ["vm", "del", "-f", "name='; DROP TABLE vms; --"], 1, "no vm matches", None),
    ("quotes and wildcards in a filter", None,
     ["user", "block", "-f", "login=\" OR 1=1; DELETE FROM users; *x"], 1, "no user matches",
     None),
    ("no filter for a change", None, ["vm", "del"], 2, "say which vms", None),
    ("deleting a running vm", RUNNING, ["vm", "del", "-f", "name=desk"], 1, "stop it first",
     None),
    ("deleting a host with vms", RUNNING, ["host", "del", "-f", "name=node1"], 1,
     "still assigned", None),
    ("invalid host address", None, ["host", "add", "name=n9", "address=not-an-ip"], 1,
     "not an IP address", None),
    ("duplicate host address", None, ["host", "add", "name=n9", "address=127.0.0.2"], 1,
     "already has that address", None),
    ("unknown config key", None, ["config", "set", "no.such.key=1"], 1,
     "unknown configuration key 'no.such.key'", None),
    ("malformed config value", None, ["config", "set", "l7r.port=http"], 1,
     "expected a port number", None),
    ("node-only config key", None, ["config", "set", "database.host=db"], 1, "node file only",
     None),
    ("empty new password", None, ["user", "passwd", "login=alice@acme"], 1, "empty", "\n"),
    ("invalid tag", None, ["di", "tag", "-f", "version=v1", "tag=bad tag"], 1,
     "may only contain", None),
    # names that reach paths and configuration lines (db/names.py)
    ("vm name with a slash", None, VM_ADD[:4] + ["name=a/b"] + VM_ADD[5:], 1,
     "VM name 'a/b' may only contain letters, digits, '.', '_' and '-'", None),
    ("vm name too long", None, VM_ADD[:4] + ["name=" + "x" * 65] + VM_ADD[5:], 1,
     "(at most 64", None),
    ("vm name dotdot", None, VM_ADD[:4] + ["name=.."] + VM_ADD[5:], 1, "VM name '..'", None),
    ("bulk vm names", None, VM_ADD[:4] + ["name=lab;x"] + VM_ADD[5:] + ["bulk=2"], 1,
     "VM name 'lab;x-1'", None),
    ("vm renamed badly", None, ["vm", "edit", "-f", "name=desk", "name=../desk"], 1,
     "VM name '../desk'", None),
    ("vm di_tag", None, VM_ADD + ["di_tag=a b"], 1, "DI tag 'a b' may only contain", None),
    ("osf name", None, ["osf", "add", "-t", "acme", "name=my osf"], 1,
     "OSF name 'my osf' may only contain", None),
    ("tenant name", None, ["tenant", "add", "name=a@b"], 1, "tenant name 'a@b' may only", None),
    ("login", None, ["user", "add", "-t", "acme", "login=bob smith"], 1,
     "login 'bob smith' may only contain", None),
    ("host name", None, ["host", "add", "name=-n9", "address=127.0.0.9"], 1,
     "host name '-n9' may only contain", None),
    ("di version", None, ["di", "add", "-t", "acme", "path=/etc/hostname", "osf=desktop",
                          "version=../v9"], 1, "DI version '../v9' may only contain", None),
    ("di trusted not a flag", None, ["di", "add", "-t", "acme", "path=/etc/hostname",
                                     "osf=desktop", "trusted=sure"], 2,
     "trusted must be 1 or 0", None),
    ("invalid time", None, ["vm", "edit", "-f", "name=desk", "expiration_hard=tomorrow"], 2,
     "date and time", None),
    ("unreadable certificate", None, ["config", "ssl", "--cert", "/no/c.pem", "--key", "/no/k"],
     1, "cannot read /no/c.pem", None),
    ("tenant on a host", None, ["host", "list", "-t", "acme"], 2, "do not belong to a tenant",
     None),
    ("start a running vm", RUNNING, ["vm", "start", "-f", "name=desk"], 1, "already running",
     None),
]


def _store(env):
    root = os.path.join(env.storage, "images")
    return sorted(os.listdir(root)) if os.path.isdir(root) else []


@pytest.mark.parametrize("setup,args,status,message,stdin",
                         [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_bad_input_is_refused_cleanly(demo, setup, args, status, message, stdin):
    if setup:
        for statement in setup.split("; "):
            demo.sql(statement)
    before, files = demo.snapshot(), _store(demo)
    result = demo.cli(*args, input=stdin)
    assert result.returncode == status, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert lines[0].startswith("qvd-admin: ")
    assert "Traceback" not in result.stdout + result.stderr
    # Nothing changed but the audit log's record of the failed change, with its reason.
    assert all(error == lines[0].removeprefix("qvd-admin: ")
               for error in demo.take_failed_changes())
    assert demo.snapshot() == before and _store(demo) == files


def test_debug_adds_the_traceback(demo):
    result = demo.cli("--debug", "vm", "add", "-t", "acme", "name=x", "user=bob", "osf=desktop",
                      real=True)  # the real binary's stderr
    assert result.returncode == 1 and "Traceback" in result.stderr


def test_malformed_node_file_names_file_and_line(demo):
    demo.write_conf("l7r.port = eighty\n")
    result = demo.cli("vm", "list")
    assert result.returncode == 1
    (line,) = result.stderr.strip().splitlines()
    assert f"{demo.conf}:" in line and "l7r.port: expected a port number (1-65535), got 'eighty'" in line
    demo.write_conf("colour = red\n")
    assert "unknown configuration key 'colour'" in demo.cli("vm", "list").stderr


def test_unreachable_database_is_one_line(demo):
    demo.write_conf("database.host = 127.0.0.1\ndatabase.port = 1\n")  # nobody listens there
    result = demo.cli("vm", "list")
    assert result.returncode == 1
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("qvd-admin: cannot use the database:")
