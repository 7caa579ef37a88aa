"""Declarative base with a naming convention, so constraint names are stable and readable."""
from sqlalchemy import MetaData, text
from sqlalchemy.orm import DeclarativeBase

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


NOW = text("now()")
FALSE = text("false")
TRUE = text("true")
ZERO = text("0")


def in_list(column: str, values) -> str:
    """SQL for a CHECK that `column` is one of `values` (NULL allowed only if the column is)."""
    quoted = ", ".join(f"'{value}'" for value in values)
    return f"{column} IN ({quoted})"
