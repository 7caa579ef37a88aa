"""Tenants, users, OSFs, DIs and hosts through the real CLI."""
import json
import os

from qvd.db.passwords import verify_password


def listed(env, obj, *args):
    return json.loads(env.ok(obj, "list", "--json", *args))


def test_user_password_is_argon2id_and_passwd_reads_stdin(demo):
    (stored,), = demo.sql("SELECT password FROM users WHERE login = 'alice'")
    assert stored.startswith("$argon2id$") and verify_password("secret", stored)
    demo.ok("user", "passwd", "login=alice@acme", input="n3w-pass\n")
    (stored,), = demo.sql("SELECT password FROM users WHERE login = 'alice'")
    assert verify_password("n3w-pass", stored) and not verify_password("secret", stored)


def test_same_login_in_two_tenants_and_login_at_tenant_forms(demo):
    demo.ok("user", "add", "login=alice#default")
    users = listed(demo, "user", "-f", "login=alice")
    assert sorted(u["tenant"] for u in users) == ["acme", "default"]
    assert [u["tenant"] for u in listed(demo, "user", "-t", "acme")] == ["acme"]


def test_user_block_and_delete_needs_no_vms(demo):
    demo.ok("user", "block", "-f", "login=alice")
    assert listed(demo, "user", "-f", "login=alice")[0]["blocked"] is True
    refused = demo.cli("user", "del", "-f", "login=alice")
    assert refused.returncode == 1 and "still has VMs" in refused.stderr
    demo.ok("vm", "del", "-f", "name=desk")
    demo.ok("user", "del", "-f", "login=alice")
    assert listed(demo, "user") == []


def test_di_add_copies_the_image_and_tags_it(demo, tmp_path):
    image = tmp_path / "new.tar"
    image.write_bytes(b"image v2")
    out = demo.ok("di", "add", "-t", "acme", f"path={image}", "osf=desktop")
    dis = {d["version"]: d for d in listed(demo, "di")}
    new = [d for v, d in dis.items() if v != "v1"][0]
    assert new["tags"].split() == sorted([new["version"], "head"])  # default stays on v1
    assert set(dis["v1"]["tags"].split()) == {"v1", "default"}
    with open(os.path.join(demo.storage, "images", new["path"]), "rb") as handle:
        assert handle.read() == b"image v2"
    assert new["path"] in out


def test_di_tag_moves_and_fixed_tags_stay(demo, tmp_path):
    image = tmp_path / "v2.tar"
    image.write_bytes(b"v2")
    demo.ok("di", "add", "-t", "acme", f"path={image}", "osf=desktop", "version=v2")
    demo.ok("di", "tag", "-f", "version=v2", "tag=default", "fixed=1")
    tags = {d["version"]: set(d["tags"].split()) for d in listed(demo, "di")}
    assert tags == {"v1": {"v1"}, "v2": {"v2", "head", "default"}}
    refused = demo.cli("di", "tag", "-f", "version=v1", "tag=default")
    assert refused.returncode == 1 and "fixed" in refused.stderr
    assert demo.cli("di", "untag", "-f", "version=v2", "tag=head").returncode == 1
    demo.ok("di", "untag", "-f", "version=v2", "tag=default")
    demo.ok("di", "tag", "-f", "version=v1", "tag=default")


def test_di_del_removes_the_file_and_moves_head_back(demo, tmp_path):
    image = tmp_path / "v2.tar"
    image.write_bytes(b"v2")
    demo.ok("di", "add", "-t", "acme", f"path={image}", "osf=desktop", "version=v2")
    (path,), = demo.sql("SELECT path FROM dis WHERE version = 'v2'")
    demo.ok("di", "del", "-f", "version=v2")
    assert not os.path.exists(os.path.join(demo.storage, "images", path))
    assert set(listed(demo, "di")[0]["tags"].split()) == {"v1", "default", "head"}


def test_osf_and_tenant_delete_only_when_unused(demo):
    assert demo.cli("osf", "del", "-f", "name=desktop").returncode == 1
    assert demo.cli("tenant", "del", "-f", "name=acme").returncode == 1
    demo.ok("vm", "del", "-f", "name=desk")
    demo.ok("di", "del", "-f", "osf=desktop")
    demo.ok("osf", "del", "-f", "name=desktop")
    demo.ok("user", "del", "-f", "tenant=acme")
    demo.ok("tenant", "del", "-f", "name=acme")
    assert [t["name"] for t in listed(demo, "tenant")] == ["default"]


def test_host_add_list_stop_del(demo):
    demo.ok("host", "add", "name=node2", "address=127.0.0.3", "frontend=0")
    hosts = {h["name"]: h for h in listed(demo, "host")}
    assert hosts["node2"]["frontend"] is False and hosts["node2"]["state"] == "stopped"
    demo.sql("UPDATE host_runtimes SET state = 'running'")
    demo.ok("host", "stop", "-f", "name=node2")
    assert demo.sql("SELECT h.name, r.cmd FROM hosts h JOIN host_runtimes r ON r.host_id = h.id "
                    "ORDER BY h.name") == [("node1", None), ("node2", "stop")]
    demo.ok("host", "del", "-f", "name=node2")
    assert list(hosts) == ["node1", "node2"] and len(listed(demo, "host")) == 1


def test_wildcards_match_literally_otherwise(demo):
    demo.ok("vm", "add", "-t", "acme", "name=lab_1", "user=alice", "osf=desktop")
    demo.ok("vm", "add", "-t", "acme", "name=labx1", "user=alice", "osf=desktop")
    names = lambda *f: [v["name"] for v in listed(demo, "vm", *f)]  # noqa: E731
    assert names("-f", "name=lab_1") == ["lab_1"]          # '_' is not a wildcard
    assert names("-f", "name=lab?1") == ["lab_1", "labx1"]
    assert names("-f", "name=*1,tenant=acme") == ["lab_1", "labx1"]


def test_config_layers_default_node_global_tenant(demo):
    assert demo.ok("config", "get", "l7r.port").strip() == "8443"
    demo.write_conf("l7r.port = 9000\n")
    assert demo.ok("config", "get", "l7r.port").strip() == "9000"
    demo.ok("config", "set", "l7r.port=9001")
    demo.ok("config", "set", "-t", "acme", "l7r.port=9002")
    assert demo.ok("config", "get", "l7r.port").strip() == "9001"
    assert demo.ok("config", "get", "-t", "acme", "l7r.port").strip() == "9002"
    rows = {r["key"]: r for r in json.loads(demo.ok("config", "list", "-t", "acme", "--json",
                                                    "-f", "key=l7r.*"))}
    assert (rows["l7r.port"]["value"], rows["l7r.port"]["source"]) == ("9002", "tenant")
    assert rows["l7r.use_ssl"]["source"] == "default"
    demo.ok("config", "del", "-t", "acme", "l7r.port")
    assert demo.ok("config", "get", "-t", "acme", "l7r.port").strip() == "9001"


def test_config_ssl_stores_a_matching_pair(demo, tmp_path):
    from tests_tls import write_pair
    cert, key, other_key = write_pair(tmp_path)
    demo.ok("config", "ssl", "--cert", cert, "--key", key)
    assert demo.sql("SELECT key FROM ssl_configs ORDER BY key") == [("l7r.ssl.cert",),
                                                                   ("l7r.ssl.key",)]
    mismatch = demo.cli("config", "ssl", "--cert", cert, "--key", other_key)
    assert mismatch.returncode == 1 and "does not belong" in mismatch.stderr
