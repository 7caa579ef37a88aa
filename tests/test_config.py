"""The node file parser, value checks and the documented sample."""
import os

import pytest

from qvd.db.ops.errors import CONSTRAINT_MESSAGES
from qvd.db.config import Config, ConfigError, parse_node_file, validate
from qvd.db.config_keys import KEYS
from qvd.db.models import Base
from qvd.db.sample_config import render

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_node_file_with_comments_and_spaces(tmp_path):
    conf = tmp_path / "node.conf"
    conf.write_text("# comment\n\n  nodename=node7  \nl7r.use_ssl = yes\n"
                    "vma.on_action.connect = /usr/local/bin/hook\n")
    assert parse_node_file(str(conf)) == {"nodename": "node7", "l7r.use_ssl": "1",
                                          "vma.on_action.connect": "/usr/local/bin/hook"}


@pytest.mark.parametrize("line,error", [
    ("just words", "expected 'key = value'"),
    ("= 3", "expected 'key = value'"),
    ("no.such.key = 1", "unknown configuration key 'no.such.key'"),
    ("l7r.port = 70000", "expected a port number"),
    ("hkd.lease.interval = -1", "expected a non-negative number"),
    ("vm.hypervisor = xen", "'xen' is not one of lxc, kvm, process"),
    ("vm.network.ip.start = 10.0.0", "expected an IPv4 address"),
    ("l7r.use_ssl = maybe", "expected a boolean"),
])
def test_node_file_errors_name_the_line(tmp_path, line, error):
    conf = tmp_path / "node.conf"
    conf.write_text(f"nodename = n\n{line}\n")
    with pytest.raises(ConfigError) as caught:
        parse_node_file(str(conf))
    assert str(caught.value).startswith(f"{conf}:2: ") and error in str(caught.value)


def test_layers_in_order():
    cfg = Config(node={"l7r.port": "1"}, db_global={"l7r.port": "2"}, db_tenant={"l7r.port": "3"})
    assert cfg.lookup("l7r.port") == ("3", "tenant")
    assert Config(node={"l7r.port": "1"}).lookup("l7r.port") == ("1", "node")
    assert Config().lookup("l7r.port") == ("8443", "default")


def test_every_default_is_valid_and_documented():
    for key in KEYS:
        assert key.doc.strip(), key.name
        if key.default is not None:
            assert validate(key.name, key.default) is not None
    assert len({key.name for key in KEYS}) == len(KEYS)


def test_sample_node_conf_is_up_to_date():
    with open(os.path.join(ROOT, "etc", "node.conf"), encoding="utf-8") as handle:
        assert handle.read() == render(), "run 'make sample-config'"


def test_error_messages_name_real_constraints():
    names = {c.name for t in Base.metadata.tables.values() for c in t.constraints}
    assert set(CONSTRAINT_MESSAGES) <= names
