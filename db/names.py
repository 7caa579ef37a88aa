"""Names that end up in file names, LXC configuration lines and command lines: VM names, DI
versions and tags, OSF, tenant and host names, user logins.

One rule for all: letters, digits, '.', '_' and '-', starting with a letter or a digit (so
never '.', '..' or something that reads as an option), at most `max_len` characters. `login@tenant`
names a user, so neither part may hold an '@' (or QVD's other separator, '#').
"""
from __future__ import annotations

import re

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
MAX_LEN = 64


class BadName(ValueError):
    """A name breaks the rule; the message says which name and what the rule is."""


def shown(value: str, limit: int = 80) -> str:
    """The value as one printable line, cut when long: error messages stay one line."""
    text = value if value.isprintable() else value.encode("unicode_escape").decode("ascii")
    return text if len(text) <= limit else text[:limit] + "..."


def check_name(kind: str, value: str, max_len: int = MAX_LEN) -> str:
    """`value` when it is a valid name, else BadName ("VM name 'a/b' may only contain ...")."""
    if not isinstance(value, str) or len(value) > max_len or not NAME.fullmatch(value):
        raise BadName(f"{kind} '{shown(str(value))}' may only contain letters, digits, '.', '_' "
                      f"and '-' (at most {max_len}, starting with a letter or digit)")
    return value


def safe_file_name(value: str, max_len: int = 100) -> str:
    """A file name made fit for the image store: every other character becomes '_', long names
    keep their end (the extension says the format)."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]", "_", value) or "image"
    return cleaned[-max_len:]
