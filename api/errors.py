"""Domain exceptions to HTTP responses, in one place.

Bodies follow the OpenAI error shape (``{"error": {"message", "type", "code"}}``) so that the
official clients show our messages as they are.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException

from core.errors import AnimaError, ServingError

log = logging.getLogger(__name__)


def error_body(message: str, kind: str, status: int, param: str | None = None) -> dict[str, object]:
    """``param``: the request parameter at fault, as OpenAI names it (null when none)."""
    return {"error": {"message": message, "type": kind, "code": status, "param": param}}


def retry_after_header(exc: Exception) -> dict[str, str] | None:
    """``Retry-After`` for a scheduler refusal (429/503) that says when to retry, else None.

    A full queue or a loading model is temporary; the header lets clients back off for the
    right time instead of retrying at once or giving up.
    """
    headers = dict(getattr(exc, "headers", None) or {})  # a key's x-ratelimit-* state
    if isinstance(exc, ServingError) and exc.retry_after is not None:
        headers["Retry-After"] = str(exc.retry_after)
    return headers or None


class ErrorDetail(BaseModel):
    message: str
    type: str
    code: int
    param: str | None = None


class ErrorResponse(BaseModel):
    """Every error Anima answers, in the OpenAI shape."""

    error: ErrorDetail


_MEANING = {
    402: "The API key's token budget for this day or month is spent, or the wallet's prepaid "
    "balance cannot pay for a priced agent",
    400: "Host not served here (ANIMA_ALLOWED_HOSTS) or a malformed request",
    401: "Sign in first (a wallet session or an API key), or the sign-in failed",
    403: "Cross-site request from a browser (ANIMA_ALLOWED_ORIGINS), or not the agent's owner",
    404: "No such agent, conversation, job or route",
    409: "The resource changed meanwhile (e.g. deleted while a reply was written)",
    413: "Body, file, image or archive larger than its limit",
    415: "Unsupported file type",
    422: "Invalid input: the message names the field",
    502: "A backend failed (the language model, or the chain refused a transaction)",
    # The model scheduler's refusals (ServingError): temporary, so 429 and 503 name Retry-After
    408: "The client read the streamed reply too slowly; generation was stopped",
    429: "Too many requests wait for the model (ANIMA_LLM_QUEUE_SIZE), or the API key's "
    "requests, tokens a minute or concurrent replies are used up; see Retry-After",
    503: "Not available right now: the model is loading or busy past the request's deadline, "
    "the chain node or a speech engine is down; see Retry-After",
    504: "The reply ran past the request deadline (ANIMA_LLM_REQUEST_TIMEOUT_S)",
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for these error statuses, all with :class:`ErrorResponse`."""
    return {s: {"model": ErrorResponse, "description": _MEANING[s]} for s in statuses}


# What any route can answer: the guards (400, 403, 413) and validation (422) apply everywhere.
GUARD_ERRORS = (400, 403, 413, 422)
# What a route behind the owner check can answer besides: sign in (401), the chain node that
# says who holds a minted agent is down (503); 403 (not the owner) is in GUARD_ERRORS.
OWNER_ERRORS = (401, 503)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(AnimaError)
    async def _anima_error(_request: Request, exc: AnimaError) -> JSONResponse:
        body = error_body(exc.message, type(exc).__name__, exc.status, getattr(exc, "param", None))
        body["error"].update(getattr(exc, "details", None) or {})  # type: ignore[attr-defined]
        return JSONResponse(
            body,
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
