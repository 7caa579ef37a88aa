"""The JSON form of the values operations show (qvd-admin --json, qvd-api): datetimes in ISO
8601, addresses as text, numerics as numbers."""
from __future__ import annotations

import decimal
import ipaddress
from datetime import datetime


def jsonable(value):
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, (ipaddress.IPv4Address, ipaddress.IPv6Address)):
        return str(value)
    if isinstance(value, decimal.Decimal):
        return float(value)
    return value


def json_default(value):
    """For json.dumps(default=...): anything else becomes its text."""
    converted = jsonable(value)
    return str(value) if converted is value else converted
