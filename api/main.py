"""qvd-api: serve the administration API on api.address:api.port (uvicorn), over TLS with
--cert/--key or else the L7R's certificate stored in the database (`qvd-admin config ssl`)."""
from __future__ import annotations

import argparse
import logging
import os
import sys

from sqlalchemy import select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from qvd.db import config as qconfig
from qvd.db.engine import connection_params, make_engine
from qvd.db.models import GLOBAL_TENANT, ConfigEntry, SslConfig

from .app import create_app


def _settings(engine, cfg: qconfig.Config) -> qconfig.Config:
    """The node file plus the database's global layer, read once at start."""
    with Session(engine) as s:
        rows = s.execute(select(ConfigEntry.key, ConfigEntry.value)
                         .where(ConfigEntry.tenant_id == GLOBAL_TENANT)).tuples().all()
    return qconfig.Config(node=cfg.node, db_global=dict(rows))


def _stored_certificate(engine, cfg: qconfig.Config) -> tuple[str, str]:
    """The stored certificate and key, written (0600) under path.run for uvicorn."""
    with Session(engine) as s:
        pem = dict(s.execute(select(SslConfig.key, SslConfig.value).where(
            SslConfig.key.in_(("l7r.ssl.cert", "l7r.ssl.key")))).tuples().all())
    if len(pem) < 2:
        raise qconfig.ConfigError("no certificate stored: run 'qvd-admin config ssl' or give "
                                  "--cert and --key")
    paths = []
    os.makedirs(cfg.get("path.run"), exist_ok=True)
    for key in ("l7r.ssl.cert", "l7r.ssl.key"):
        path = os.path.join(cfg.get("path.run"), "api-" + key.rsplit(".", 1)[1] + ".pem")
        with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as out:
            out.write(pem[key])
        paths.append(path)
    return paths[0], paths[1]


def main(argv=None) -> None:
    import uvicorn
    parser = argparse.ArgumentParser(prog="qvd-api", description=__doc__.splitlines()[0])
    parser.add_argument("--cert", help="PEM certificate (default: the stored one)")
    parser.add_argument("--key", help="PEM private key")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s qvd-api[%(process)d] %(levelname)s %(message)s")
    try:
        node = qconfig.load()
        engine = make_engine(connection_params(node), pool_size=8, max_overflow=8,
                             pool_pre_ping=True)
        cfg = _settings(engine, node)
        tls = {}
        if cfg.get_bool("api.use_ssl"):
            cert, key = (args.cert, args.key) if args.cert and args.key else \
                _stored_certificate(engine, cfg)
            tls = {"ssl_certfile": cert, "ssl_keyfile": key}
    except qconfig.ConfigError as exc:
        sys.exit(f"qvd-api: {exc}")
    except OperationalError as exc:
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        sys.exit(f"qvd-api: cannot use the database: {reason}")
    # A browser's connections (the WAT's event streams among them) get 3 s to end at a stop.
    uvicorn.run(create_app(cfg, engine), host=cfg.get("api.address"),
                port=cfg.get_int("api.port"), log_level="info", timeout_graceful_shutdown=3,
                **tls)


if __name__ == "__main__":
    main()
