"""qvd-admin config ssl: store the L7R's certificate and key, read from files (the other config
verbs are the domain layer's: db/ops/configs.py)."""
import click
from sqlalchemy.dialects.postgresql import insert

from qvd.db.models import SslConfig
from qvd.db.ops.context import Request
from qvd.db.tls import TlsError, check_pair

from ..errors import UserError
from ..verbs import CONTEXT
from . import GROUPS

group = GROUPS["config"]


@group.command("ssl", context_settings=CONTEXT)
@click.option("--cert", "cert", required=True, type=click.Path(dir_okay=False),
              help="PEM certificate (chain) of the L7R.")
@click.option("--key", "key", required=True, type=click.Path(dir_okay=False),
              help="PEM private key matching the certificate.")
@click.option("--ca", "ca", type=click.Path(dir_okay=False), help="PEM CA bundle (optional).")
@click.option("--debug", is_flag=True, hidden=True)
@click.pass_obj
def ssl(admin, cert, key, ca, debug):
    """Store the L7R's TLS certificate and key (checked to match) in the database."""
    texts = {}
    for name, path in (("l7r.ssl.cert", cert), ("l7r.ssl.key", key), ("l7r.ssl.ca", ca)):
        if path is None:
            continue
        try:
            with open(path, encoding="ascii") as handle:
                texts[name] = handle.read()
        except (OSError, UnicodeDecodeError) as exc:
            raise UserError(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from None
    try:
        subject = check_pair(texts["l7r.ssl.cert"], texts["l7r.ssl.key"], texts.get("l7r.ssl.ca"))
    except TlsError as exc:
        raise UserError(str(exc)) from None
    with admin.session() as s:
        for name, value in texts.items():
            stmt = insert(SslConfig).values(key=name, value=value)
            s.execute(stmt.on_conflict_do_update(index_elements=["key"], set_={"value": value}))
        admin.audit(s, "config", "ssl",
                    Request(args={"cert": cert, "key": "***", "ca": ca or ""}), [])
    print(f"certificate for {subject} stored")

