"""PUT /api/v1/dis/upload?osf=NAME[&version=V][&trusted=1][&name=FILE]: a DI image as the
request body, streamed straight into the image store (db/ops/dis.py writes it under a .part
name and renames it once whole): a body larger than api.upload.max_size MiB is refused with
413, one cut short (the client went away, or fewer bytes than its Content-Length) leaves
neither a file nor a DI."""
from __future__ import annotations

import anyio.from_thread
from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from qvd.db.ops.context import Request as OpRequest
from qvd.db.ops.context import Upload
from qvd.db.ops.errors import UploadCut

from .problems import Problem
from .resources import _run
from .session import acting

router = APIRouter(prefix="/api/v1")


def _receiver(request: Request, limit: int):
    expected = int(request.headers.get("content-length") or -1)
    if expected > limit:
        raise Problem(413, f"the image is larger than api.upload.max_size "
                           f"({limit // 2**20} MiB)")
    chunks = request.stream().__aiter__()

    def save(out) -> None:
        """Runs in the worker thread: each chunk is fetched from the event loop."""
        received = 0
        while True:
            try:
                chunk = anyio.from_thread.run(chunks.__anext__)
            except StopAsyncIteration:
                break
            except ClientDisconnect:
                raise UploadCut(f"the upload stopped after {received} of "
                                f"{expected if expected >= 0 else 'unknown'} bytes") from None
            received += len(chunk)
            if received > limit:
                raise Problem(413, "the image is larger than api.upload.max_size")
            out.write(chunk)
        if expected >= 0 and received != expected:
            raise UploadCut(f"the upload stopped after {received} of {expected} bytes")
    return save


@router.put("/dis/upload", status_code=201)
async def upload_di(request: Request, osf: str, version: str | None = None,
                    trusted: bool = False, name: str = "image.tar",
                    tenant: str | None = None):
    ctx = await run_in_threadpool(acting, request)
    limit = request.app.state.cfg.get_int("api.upload.max_size") * 2**20
    ctx.upload = Upload(name, _receiver(request, limit))
    args = {"osf": osf, **({"version": version} if version else {}),
            **({"trusted": "1"} if trusted else {})}
    return await run_in_threadpool(_run, ctx, "di add", OpRequest(args=args, tenant=tenant))
