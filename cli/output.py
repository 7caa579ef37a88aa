"""Printing rows: an aligned table for people, --json and --csv for scripts, -q without header."""
from __future__ import annotations

import csv
import json
import sys
from datetime import datetime

from qvd.db.ops.values import jsonable


def _plain(value):
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, datetime):
        return value.isoformat(timespec="seconds")
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True)
    return str(value)




def print_rows(columns: list[str], rows: list[dict], fmt: str, quiet: bool) -> None:
    out = sys.stdout
    if fmt == "json":
        json.dump([{c: jsonable(row.get(c)) for c in columns} for row in rows], out, indent=1)
        out.write("\n")
        return
    if fmt == "csv":
        writer = csv.writer(out, lineterminator="\n")
        if not quiet:
            writer.writerow(columns)
        writer.writerows([[_plain(row.get(c)) for c in columns] for row in rows])
        return
    cells = [[_plain(row.get(c)) for c in columns] for row in rows]
    header = [] if quiet else [columns]
    widths = [max(len(line[i]) for line in header + cells) if header + cells else 0
              for i in range(len(columns))]
    for line in header + cells:
        out.write("  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip() + "\n")
