"""``/api/models``: model connections (local files, OpenAI-compatible servers) and the default.

Only translates HTTP to ``agents.model_connections``; that service decides who may change
what (operators: ``ANIMA_ADMIN_ADDRESSES``) and never hands out a stored API key.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Response, status
from pydantic import BaseModel, Field

from agents.model_connections import ConnectionView, ModelsOverview, NewConnection, TestResult
from api.deps import Caller, services
from api.errors import GUARD_ERRORS, error_responses
from container import Services

router = APIRouter(
    prefix="/api/models",
    tags=["models"],
    responses=error_responses(*GUARD_ERRORS, 401),
)
Svc = Annotated[Services, Depends(services)]


class DefaultModel(BaseModel):
    model: str | None = Field(
        default=None,
        max_length=400,
        description="'conn:<connection>/<model id>', or null for the settings' default.",
    )


@router.get("", response_model=ModelsOverview)
def overview(svc: Svc, principal: Caller) -> ModelsOverview:
    """The default model and every connection with its models (paths and URLs: operators)."""
    return svc.models.overview(principal=principal)


@router.post("/test", response_model=TestResult, responses=error_responses(502))
def test_connection(svc: Svc, body: NewConnection, principal: Caller) -> TestResult:
    """Try a connection without saving it: 422 with the server's answer when it fails."""
    return svc.models.test(body, principal=principal)


@router.post(
    "/connections",
    response_model=ConnectionView,
    status_code=status.HTTP_201_CREATED,
    responses=error_responses(409),
)
def add_connection(svc: Svc, body: NewConnection, principal: Caller) -> ConnectionView:
    """Test the connection, then save it; one that fails its test is not saved (422)."""
    return svc.models.add(body, principal=principal)


@router.post(
    "/connections/{name}/test", response_model=ConnectionView, responses=error_responses(404)
)
def retest_connection(svc: Svc, name: str, principal: Caller) -> ConnectionView:
    """Test a saved connection again and refresh its list of models."""
    return svc.models.retest(name, principal=principal)


@router.delete(
    "/connections/{name}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=error_responses(404),
)
def delete_connection(svc: Svc, name: str, principal: Caller) -> Response:
    svc.models.delete(name, principal=principal)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.put("/default", response_model=ModelsOverview)
def set_default(svc: Svc, body: DefaultModel, principal: Caller) -> ModelsOverview:
    """The model agents without their own use, from now on (no restart)."""
    return svc.models.set_default(body.model, principal=principal)
