"""The qvd-admin groups: the domain layer's objects (cli/verbs.py builds them), plus what only
a local run does: `config ssl` (reads certificate files), `db`, `doctor`, `system`."""
from ..verbs import operation_groups

GROUPS = operation_groups()

from . import config, db, doctor, system  # noqa: E402 - config adds `ssl` to GROUPS["config"]

ALL_GROUPS = [*GROUPS.values(), db.group, doctor.group, system.group]
