"""Failures that only a log file knew now reach `qvd-admin host list`: the L7R acceptor that
cannot listen (its port taken by another program) puts the sentence on the host row, and
takes it back once it listens."""
import json
import socket

from hkd_nodes import HkdNode, wait_for
from qvd.hkd.backends.process import free_port
from qvd.l7r.client import accepting
from tests_tls import write_pair


def host_row(demo) -> dict:
    return json.loads(demo.ok("host", "list", "--json"))[0]


def test_a_taken_l7r_port_is_on_the_host_row_until_it_is_free(demo, tmp_path):
    cert, key, _ = write_pair(tmp_path)
    demo.ok("config", "ssl", "--cert", cert, "--key", key)
    other = socket.socket()  # another program holds the port first
    other.bind(("127.0.0.1", 0))
    other.listen()
    port = other.getsockname()[1]
    node = HkdNode(demo, "node1", f"l7r.address = 127.0.0.1\nl7r.port = {port}\n")
    try:
        node.start()
        row = wait_for(lambda: (r := host_row(demo))["last_error"] and r, 20,
                       "the L7R's failure on the host row")
        assert row["last_error"] == (f"qvd-l7r: cannot listen on 127.0.0.1:{port}: Address "
                                     "already in use; free the port or set l7r.port (or "
                                     "l7r.address) to another")
        assert row["state"] == "running"  # the node itself runs: VMs can still start
        other.close()
        wait_for(lambda: accepting("127.0.0.1", port), 20, "the L7R to listen once free")
        wait_for(lambda: not host_row(demo)["last_error"], 20, "the error taken back")
    finally:
        other.close()
        node.cleanup()


def test_an_unusable_certificate_is_on_the_host_row(demo, tmp_path):
    cert, key, _ = write_pair(tmp_path)
    demo.ok("config", "ssl", "--cert", cert, "--key", key)
    # what psql, or a disk that lost a block, can leave: the CLI itself checks what it stores
    demo.sql("UPDATE ssl_configs SET value = 'not a certificate' WHERE key = 'l7r.ssl.cert'")
    node = HkdNode(demo, "node1", f"l7r.address = 127.0.0.1\nl7r.port = {free_port()}\n")
    try:
        node.start()
        row = wait_for(lambda: (r := host_row(demo))["last_error"] and r, 20,
                       "the L7R's failure on the host row")
        assert row["last_error"] == (
            "qvd-l7r: the L7R certificate or key cannot be used (not a PEM certificate and "
            "key); store a valid pair with 'qvd-admin config ssl --cert FILE --key FILE'")
    finally:
        node.cleanup()
