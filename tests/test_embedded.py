"""The embedded PostgreSQL (qvd.db.embedded) that `make run` and the tests start."""
import os
import shutil
import socket
import tempfile

import psycopg

from qvd.db.embedded import Cluster


def test_a_cluster_whose_port_was_taken_since_it_was_made_starts_on_a_free_one():
    """Two clusters created at once pick the same free port (or another program takes it
    later): the start moves to a free port instead of failing, and clients find it."""
    root = tempfile.mkdtemp(prefix="qvd-embedded-")
    os.chmod(root, 0o755)  # the server may run as another account than the tests
    cluster = Cluster(os.path.join(root, "pg"))
    holder = socket.socket()
    try:
        cluster.create({"fsync": "off"})
        taken = cluster.port
        holder.bind(("127.0.0.1", taken))
        holder.listen()
        assert cluster.start()
        assert cluster.port != taken
        with psycopg.connect(**dict(cluster.connection_params(), host="127.0.0.1",
                                    dbname="postgres")) as conn:
            assert conn.execute("SHOW port").fetchone() == (str(cluster.port),)
    finally:
        holder.close()
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)
