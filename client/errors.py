"""What the user reads when something goes wrong: one plain sentence per case."""
from __future__ import annotations

from qvd.l7r.client import Response


class ClientError(Exception):
    """Printed as is; qvd-client exits with status 1."""


def explain(response: Response) -> str:
    body = response.body.decode("utf-8", "replace").strip().splitlines()
    said = body[0] if body else ""
    if response.status == 401:
        return "The login or the password is wrong (or too many failed attempts: wait and retry)."
    if response.status == 403:
        return f"Not allowed: {said or 'the server refused the request'}."
    if response.status == 404:
        return "There is no such virtual machine for this user."
    if response.status == 408:
        return "The virtual machine did not stop in time."
    if response.status == 503:
        return said or "The server is busy or the virtual machine is not available; retry later."
    if response.status in (400, 405, 426, 505):
        return f"The server did not understand this client (HTTP {response.status} {said})."
    return f"The server answered {response.status} {response.reason} {said}".strip()
