"""The image store through the domain layer, as a front end other than qvd-admin on the node
uses it (qvd-api): path= may not name a file on the node, an upload lands whole or not at all."""
import os

import pytest

from qvd.db.acl.actor import local_actor
from qvd.db.config import Config, parse_node_file
from qvd.db.ops.context import Context, Request, Upload
from qvd.db.ops.errors import BadRequest, UploadCut


def remote(env) -> Context:
    """A front end that does not run on the node's console (the API)."""
    return Context(actor=local_actor(), cfg=Config(node=parse_node_file(env.conf)),
                   engine=env.engine, source="api", client_address="192.0.2.8")


def stored(env) -> list[str]:
    images = os.path.join(env.storage, "images")
    return sorted(os.listdir(images)) if os.path.isdir(images) else []


def test_a_remote_front_end_cannot_copy_a_node_file_into_the_store(demo):
    before = stored(demo)
    with pytest.raises(BadRequest, match="only qvd-admin on the node"):
        remote(demo).run("di add", Request(args={"path": "/etc/shadow", "osf": "desktop"},
                                           tenant="acme"))
    assert stored(demo) == before
    assert demo.sql("SELECT count(*) FROM dis") == [(1,)]
    assert demo.sql("SELECT status, source, host(client_address) FROM admin_log "
                    "WHERE object = 'di' ORDER BY id DESC LIMIT 1") == [
        ("failed", "api", "192.0.2.8")]


def test_an_upload_cut_short_leaves_no_file_and_no_di(demo):
    before = stored(demo)

    def cut(out):
        out.write(b"\0" * 65536)
        raise UploadCut("the upload ended after 65536 of 1048576 bytes")
    ctx = remote(demo)
    ctx.upload = Upload("desk.tar", cut)
    with pytest.raises(UploadCut):
        ctx.run("di add", Request(args={"osf": "desktop"}, tenant="acme"))
    assert stored(demo) == before  # neither the image nor its .part
    assert demo.sql("SELECT count(*) FROM dis") == [(1,)]

    ctx = remote(demo)
    ctx.upload = Upload("desk.tar", lambda out: out.write(b"image bytes"))
    ctx.run("di add", Request(args={"osf": "desktop", "version": "v2"}, tenant="acme"))
    (path,), = demo.sql("SELECT path FROM dis WHERE version = 'v2'")[0:1]
    with open(os.path.join(demo.storage, "images", path), "rb") as image:
        assert image.read() == b"image bytes"
