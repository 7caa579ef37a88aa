"""Errors as RFC 9457 problem details (application/problem+json), with the domain error's
message as `detail`: one mapping from each kind of error to its HTTP status."""
from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from qvd.db.acl.check import AccessDenied
from qvd.db.ops.errors import BadRequest, DomainError, NotFound, UploadCut

MEDIA_TYPE = "application/problem+json"
TITLES = {400: "Bad request", 401: "Not logged in", 403: "Forbidden", 404: "Not found",
          405: "Method not allowed", 409: "Refused", 413: "Too large", 422: "Invalid request",
          429: "Too many attempts", 500: "Internal error", 503: "Unavailable"}


class Problem(Exception):
    def __init__(self, status: int, detail: str, headers: dict | None = None):
        super().__init__(detail)
        self.status, self.detail, self.headers = status, detail, headers or {}


def problem(status: int, detail: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"type": "about:blank", "title": TITLES.get(status, "Error"),
                         "status": status, "detail": detail}, status_code=status,
                        media_type=MEDIA_TYPE, headers=headers)


def status_of(exc: Exception) -> int:
    """The HTTP status of a domain error."""
    if isinstance(exc, AccessDenied):
        return 403
    if isinstance(exc, NotFound):
        return 404
    if isinstance(exc, (BadRequest, UploadCut)):
        return 422
    return 409


def _validation_detail(exc: RequestValidationError) -> str:
    first = exc.errors()[0] if exc.errors() else {}
    where = ".".join(str(part) for part in first.get("loc", ()) if part != "body")
    if first.get("type") == "json_invalid":
        return "the body is not valid JSON"
    return f"{where}: {first.get('msg', 'invalid')}" if where else first.get("msg", "invalid")


def install(app: FastAPI) -> None:
    @app.exception_handler(Problem)
    async def _problem(_request: Request, exc: Problem):
        return problem(exc.status, exc.detail, exc.headers)

    @app.exception_handler(DomainError)
    async def _domain(_request: Request, exc: DomainError):
        return problem(status_of(exc), str(exc))

    @app.exception_handler(AccessDenied)
    async def _denied(_request: Request, exc: AccessDenied):
        return problem(403, str(exc))

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError):
        return problem(422, _validation_detail(exc))

    @app.exception_handler(HTTPException)
    async def _http(_request: Request, exc: HTTPException):
        return problem(exc.status_code, str(exc.detail))
