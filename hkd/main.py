"""qvd-hkd: the node daemon (one per node). Runs in the foreground; logs to stderr."""
from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

from qvd.db import config as qconfig

from .backends import BackendError
from .database import DbUnavailable
from .node import Node, NodeError


async def _run(node: Node) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, node.request_stop)
    await node.run()


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="qvd-hkd", description=__doc__.splitlines()[0])
    parser.add_argument("--debug", action="store_true", help="log debug messages")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.INFO, stream=sys.stderr,
                        format="%(asctime)s qvd-hkd %(levelname)s %(name)s: %(message)s")
    try:
        node = Node(qconfig.load())
        asyncio.run(_run(node))
    except (qconfig.ConfigError, NodeError, BackendError, DbUnavailable) as exc:
        print(f"qvd-hkd: {exc}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
