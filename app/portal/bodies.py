"""Request bodies of public endpoints, read only up to a limit.

`request.body()` reads whatever a client sends before any check can refuse it. Here a declared
`Content-Length` over the limit is refused before a byte is read, and a body sent without one
(chunked) is refused as soon as it passes the limit.
"""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import JSONResponse


class BodyTooLarge(Exception):
    """The body is larger than the endpoint accepts."""


async def read_body(request: Request, max_bytes: int) -> bytes:
    """The request's body, or BodyTooLarge once it is known to exceed `max_bytes`."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise BodyTooLarge(f"{declared} bytes declared, at most {max_bytes} accepted")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise BodyTooLarge(f"more than {max_bytes} bytes sent")
        chunks.append(chunk)
    return b"".join(chunks)


def too_large(exc: BodyTooLarge) -> JSONResponse:
    return JSONResponse({"error": f"body too large: {exc}"}, status_code=413)
