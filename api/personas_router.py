"""``/api/personas``: the caller's own personas (name, description, avatar, the default).

Every route takes the caller: a persona belongs to a signed-in wallet or an anonymous browser,
and another's answers 404 (``agents.personas``).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, File, Response, UploadFile, status
from pydantic import BaseModel, Field

from agents.personas import MAX_AVATAR_BYTES, MAX_DESCRIPTION_CHARS, MAX_NAME_CHARS, PersonaView
from api.deps import Caller, services
from api.errors import GUARD_ERRORS, error_responses
from api.uploads import process_upload
from container import Services
from core.errors import NotFoundError

router = APIRouter(
    prefix="/api/personas",
    tags=["personas"],
    responses=error_responses(*GUARD_ERRORS, 404),
)
Svc = Annotated[Services, Depends(services)]


class NewPersona(BaseModel):
    name: str = Field(min_length=1, max_length=MAX_NAME_CHARS)
    description: str = Field(default="", max_length=MAX_DESCRIPTION_CHARS)
    is_default: bool = Field(default=False, description="Make it the default for new chats.")


class PersonaPatch(BaseModel):
    name: str | None = Field(default=None, min_length=1, max_length=MAX_NAME_CHARS)
    description: str | None = Field(default=None, max_length=MAX_DESCRIPTION_CHARS)


@router.get("", response_model=list[PersonaView])
def list_personas(svc: Svc, principal: Caller) -> list[PersonaView]:
    return svc.personas.list(principal=principal)


@router.post("", response_model=PersonaView, status_code=status.HTTP_201_CREATED)
def create_persona(svc: Svc, body: NewPersona, principal: Caller) -> PersonaView:
    return svc.personas.create(
        body.name, body.description, make_default=body.is_default, principal=principal
    )


@router.get("/{persona_id}", response_model=PersonaView)
def get_persona(svc: Svc, persona_id: str, principal: Caller) -> PersonaView:
    return svc.personas.get(persona_id, principal=principal)


@router.patch("/{persona_id}", response_model=PersonaView)
def update_persona(svc: Svc, persona_id: str, body: PersonaPatch, principal: Caller) -> PersonaView:
    changes = body.model_dump(exclude_unset=True)
    return svc.personas.update(persona_id, changes, principal=principal)


@router.delete("/{persona_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_persona(svc: Svc, persona_id: str, principal: Caller) -> Response:
    svc.personas.delete(persona_id, principal=principal)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/{persona_id}/default", response_model=PersonaView)
def set_default_persona(svc: Svc, persona_id: str, principal: Caller) -> PersonaView:
    """New chats of the caller take this persona."""
    return svc.personas.set_default(persona_id, principal=principal)


@router.get("/{persona_id}/avatar", responses={200: {"content": {"image/png": {}}}})
def get_persona_avatar(svc: Svc, persona_id: str, principal: Caller) -> Response:
    image = svc.personas.avatar(persona_id, principal=principal)
    if image is None:
        raise NotFoundError("this persona has no avatar")
    return Response(image, media_type="image/png")


@router.put("/{persona_id}/avatar", response_model=PersonaView)
async def set_persona_avatar(
    svc: Svc, persona_id: str, file: Annotated[UploadFile, File()], principal: Caller
) -> PersonaView:
    return await process_upload(
        file,
        MAX_AVATAR_BYTES,
        lambda _name, content: svc.personas.set_avatar(persona_id, content, principal=principal),
    )
