"""QVD's command grammar: `-f key=value,...` filters with * and ? wildcards, `key=value` args."""
from __future__ import annotations

from sqlalchemy import Boolean, String, cast
from sqlalchemy.dialects.postgresql import INET
from sqlalchemy.sql import ColumnElement

from qvd.db.names import BadName, check_name

from .errors import BadRequest, DomainError

_TRUE = {"1", "true", "yes", "on", "y"}
_FALSE = {"0", "false", "no", "off", "n"}


def parse_pairs(items, what: str) -> dict[str, str]:
    """['a=1', 'b=2'] -> {'a': '1', 'b': '2'}; a word without '=' is a usage error."""
    pairs: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise BadRequest(f"expected key=value in {what}, got '{item}'")
        if key in pairs:
            raise BadRequest(f"'{key}' given twice in {what}")
        pairs[key] = value
    return pairs


def parse_filters(options) -> dict[str, str]:
    """Each -f option holds comma-separated key=value pairs."""
    items = [part for option in options for part in option.split(",") if part.strip()]
    return parse_pairs(items, "the filter")


def check_keys(given: dict, allowed, required=(), what: str = "arguments") -> None:
    unknown = sorted(set(given) - set(allowed))
    if unknown:
        raise BadRequest(f"unknown key '{unknown[0]}' in {what}; valid keys: "
                    + ", ".join(sorted(allowed)))
    missing = [key for key in required if not given.get(key)]
    if missing:
        raise BadRequest(f"missing {missing[0]}=... in {what}")


def like_pattern(value: str) -> str:
    """QVD wildcards to SQL LIKE: * -> %, ? -> _, everything else literal."""
    escaped = value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped.replace("*", "%").replace("?", "_")


def filter_clause(column: ColumnElement, value: str) -> ColumnElement:
    """Compare the column's text form; values are bound parameters, never SQL."""
    text = cast(column, String)
    if "*" in value or "?" in value:
        return text.like(like_pattern(value), escape="\\")
    return text == value


def apply_filters(stmt, fields: dict[str, ColumnElement], filters: dict[str, str]):
    check_keys(filters, fields, what="the filter")
    for key, value in filters.items():
        column = fields[key]
        if isinstance(column.type, INET):  # inet's text form carries a /32
            stmt = stmt.where(filter_clause(column, value.split("/")[0]) if "*" in value
                              else cast(column, String).in_([value, value + "/32"]))
        elif isinstance(column.type, Boolean):
            stmt = stmt.where(column == parse_bool(value, key))
        else:
            stmt = stmt.where(filter_clause(column, value))
    return stmt


def parse_bool(value: str, key: str) -> bool:
    low = value.strip().lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise BadRequest(f"{key} must be 1 or 0, got '{value}'")


def parse_positive_int(value: str, key: str, allow_zero: bool = False) -> int:
    try:
        number = int(value)
    except ValueError:
        raise BadRequest(f"{key} must be a whole number, got '{value}'") from None
    if number < 0 or (number == 0 and not allow_zero):
        raise BadRequest(f"{key} must be {'zero or more' if allow_zero else 'positive'}, got '{value}'")
    return number


def parse_name(kind: str, value: str, max_len: int = 64) -> str:
    """A name that reaches paths or configuration lines (db/names.py); a bad one is the
    admin's mistake: exit status 1, one line naming the value and the rule."""
    try:
        return check_name(kind, value, max_len)
    except BadName as exc:
        raise DomainError(str(exc)) from None
