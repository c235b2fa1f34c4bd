"""Domain exceptions to HTTP responses, in one place.

Bodies follow the OpenAI error shape (``{"error": {"message", "type", "code"}}``) so that the
official clients show our messages as they are.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from core.errors import AnimaError, ServingError

log = logging.getLogger(__name__)


def error_body(message: str, kind: str, status: int) -> dict[str, object]:
    return {"error": {"message": message, "type": kind, "code": status}}


def retry_after_header(exc: Exception) -> dict[str, str] | None:
    """``Retry-After`` for 429/503 answers of the model scheduler (issue 10)."""
    if isinstance(exc, ServingError) and exc.retry_after is not None:
        return {"Retry-After": str(exc.retry_after)}
    return None


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(AnimaError)
    async def _anima_error(_request: Request, exc: AnimaError) -> JSONResponse:
        return JSONResponse(
            error_body(exc.message, type(exc).__name__, exc.status),
            status_code=exc.status,
            headers=retry_after_header(exc),
        )

    @app.exception_handler(HTTPException)
    async def _http_error(_request: Request, exc: HTTPException) -> JSONResponse:
        message = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        if exc.status_code == 404 and message == "Not Found":
            message = "no such route or resource (no agent or conversation at this path)"
        return JSONResponse(
            error_body(message, "http_error", exc.status_code),
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(RequestValidationError)
    async def _request_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        parts = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
            parts.append(f"{where}: {err.get('msg')}" if where else str(err.get("msg")))
        return JSONResponse(
            error_body("; ".join(parts), "invalid_request_error", 422), status_code=422
        )
