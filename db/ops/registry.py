"""Every operation the system offers, by the name administrators know it by (`vm start`,
`user token del`): what runs it and how it is described. The CLI builds its commands from this
table and the API its resources; db/acl/operations.py says which ACLs each one needs."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Operation:
    name: str
    run: Callable        # run(ctx: Context, request: Request) -> None
    help: str
    lists: bool = False  # a listing: its result is rows (ctx.shown)
    words: bool = False  # its arguments are bare names (`config get key1 key2`)


REGISTRY: dict[str, Operation] = {}
OBJECTS: dict[str, str] = {}  # "vm" -> what it is, "user token" -> ...


def object_kind(name: str, help: str) -> str:
    OBJECTS[name] = help
    return name


def verb(kind: str, name: str, help: str, lists: bool = False, words: bool = False):
    """Register fn(ctx, request) as the operation `<kind> <name>`."""
    def register(fn):
        full = f"{kind} {name}"
        if full in REGISTRY:
            raise ImportError(f"operation '{full}' defined twice")
        REGISTRY[full] = Operation(full, fn, help, lists, words)
        return fn
    return register
