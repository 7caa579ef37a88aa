"""Free-form key/value properties per object (merged OSF < DI < user < VM for the VMA)."""
from sqlalchemy import CheckConstraint, ForeignKey, Integer, Text
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base

# object name -> (table name, owner table)
PROPERTY_OWNERS = {"user": "users", "vm": "vms", "host": "hosts", "osf": "osfs", "di": "dis"}


def _property_model(obj: str, owner_table: str):
    attrs = {
        "__tablename__": f"{obj}_properties",
        "owner_id": mapped_column(Integer, ForeignKey(f"{owner_table}.id", ondelete="CASCADE"),
                                  primary_key=True),
        "key": mapped_column(Text, primary_key=True),
        "value": mapped_column(Text),
        "__annotations__": {"owner_id": Mapped[int], "key": Mapped[str], "value": Mapped[str]},
        "__table_args__": (CheckConstraint("key <> ''", name="key_not_empty"),),
    }
    return type(f"{obj.capitalize()}Property", (Base,), attrs)


PROPERTY_MODELS = {obj: _property_model(obj, table) for obj, table in PROPERTY_OWNERS.items()}
