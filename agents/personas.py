"""Personas: who the user is in a chat (a name for ``{{user}}`` and a description the model
reads), kept per user and picked per conversation, as in SillyTavern.

A persona belongs to whoever made it: the signed-in wallet, else the browser's anonymous
identity (``Principal.visitor_id``); a caller with neither shares the local personas, like
anonymous drafts. Nobody sees or changes another's personas: a persona that is not the
caller's answers 404, exactly like one that does not exist, so ids cannot be probed. One
persona per owner may be the default that new chats take.

The avatar is a small PNG kept in the row (checked and converted like agent avatars): it is
shown beside the user's lines and never needed without the persona.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy import Boolean, DateTime, LargeBinary, String, Text, false, select
from sqlalchemy.orm import Mapped, mapped_column

from agents.avatar import normalise_avatar
from agents.records import utcnow
from core.db import Base, Database, UTCDateTime
from core.errors import NotFoundError, ValidationError
from core.files import is_safe_id
from core.principal import Principal

MAX_NAME_CHARS = 100
MAX_DESCRIPTION_CHARS = 8_000
MAX_AVATAR_BYTES = 4_000_000
MAX_PERSONAS = 200  # per owner: a picker beyond this is no help to anyone


class PersonaRecord(Base):
    __tablename__ = "personas"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    owner_address: Mapped[str | None] = mapped_column(String(42), nullable=True, index=True)
    visitor_id: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    name: Mapped[str] = mapped_column(String(MAX_NAME_CHARS))
    description: Mapped[str] = mapped_column(Text, default="", server_default="")
    avatar: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    is_default: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class PersonaView(BaseModel):
    id: str
    name: str
    description: str
    has_avatar: bool
    is_default: bool
    created_at: UTCDateTime
    updated_at: UTCDateTime


def persona_view(row: PersonaRecord) -> PersonaView:
    return PersonaView(
        id=row.id,
        name=row.name,
        description=row.description or "",
        has_avatar=row.avatar is not None,
        is_default=bool(row.is_default),
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _owner_of(principal: Principal) -> tuple[str | None, str | None]:
    """(wallet, visitor) a persona made by ``principal`` belongs to."""
    if principal.address is not None:
        return principal.address, None
    return None, principal.visitor_id


def _mine(principal: Principal) -> Any:
    """The WHERE clause selecting ``principal``'s personas."""
    address, visitor = _owner_of(principal)
    if address is not None:
        return PersonaRecord.owner_address == address
    if visitor is not None:
        return (PersonaRecord.owner_address.is_(None)) & (PersonaRecord.visitor_id == visitor)
    return (PersonaRecord.owner_address.is_(None)) & (PersonaRecord.visitor_id.is_(None))


def _is_mine(row: PersonaRecord, principal: Principal) -> bool:
    if principal.is_system:
        return True
    address, visitor = _owner_of(principal)
    if address is not None:
        return principal.is_address(row.owner_address)
    return row.owner_address is None and row.visitor_id == visitor


def _clean_name(name: Any) -> str:
    if not isinstance(name, str) or not name.strip():
        raise ValidationError("a persona needs a name")
    name = name.strip()
    if len(name) > MAX_NAME_CHARS:
        raise ValidationError(f"a persona's name is at most {MAX_NAME_CHARS} characters")
    return name


def _clean_description(text: Any) -> str:
    if not isinstance(text, str):
        raise ValidationError("a persona's description is text")
    if len(text) > MAX_DESCRIPTION_CHARS:
        raise ValidationError(
            f"a persona's description is at most {MAX_DESCRIPTION_CHARS} characters"
        )
    return text.strip()


class PersonaService:
    """Every method takes the caller and only ever touches the caller's own personas."""

    def __init__(self, db: Database, max_image_pixels: int | None = None) -> None:
        self.db = db
        self.max_image_pixels = max_image_pixels

    # ----- reading -------------------------------------------------------------------
    def list(self, *, principal: Principal) -> list[PersonaView]:
        with self.db.session() as s:
            rows = s.scalars(
                select(PersonaRecord).where(_mine(principal)).order_by(PersonaRecord.name)
            ).all()
            return [persona_view(r) for r in rows]

    def get(self, persona_id: str, *, principal: Principal) -> PersonaView:
        with self.db.session() as s:
            return persona_view(self._row(s, persona_id, principal))

    def avatar(self, persona_id: str, *, principal: Principal) -> bytes | None:
        with self.db.session() as s:
            return self._row(s, persona_id, principal).avatar

    def default(self, *, principal: Principal) -> PersonaView | None:
        """The caller's default persona, if one is marked."""
        with self.db.session() as s:
            row = s.scalars(
                select(PersonaRecord).where(_mine(principal), PersonaRecord.is_default).limit(1)
            ).first()
            return persona_view(row) if row is not None else None

    def for_new_chat(self, persona_id: str | None, *, principal: Principal) -> PersonaView | None:
        """The persona a new chat uses: the one asked for (404 if not the caller's), else
        the caller's default, else none."""
        if persona_id:
            return self.get(persona_id, principal=principal)
        return self.default(principal=principal)

    # ----- writing -------------------------------------------------------------------
    def create(
        self,
        name: str,
        description: str = "",
        *,
        make_default: bool = False,
        principal: Principal,
    ) -> PersonaView:
        address, visitor = _owner_of(principal)
        row = PersonaRecord(
            id=uuid.uuid4().hex,
            owner_address=address,
            visitor_id=visitor,
            name=_clean_name(name),
            description=_clean_description(description),
        )
        with self.db.session() as s:
            mine = s.scalars(select(PersonaRecord.id).where(_mine(principal))).all()
            if len(mine) >= MAX_PERSONAS:
                raise ValidationError(f"you already have {MAX_PERSONAS} personas")
            # The first persona is the default: a user with personas always has one.
            row.is_default = make_default or not mine
            if row.is_default:
                self._clear_default(s, principal)
            s.add(row)
            s.flush()
            return persona_view(row)

    def update(
        self, persona_id: str, changes: dict[str, Any], *, principal: Principal
    ) -> PersonaView:
        """Change ``name`` and/or ``description`` (only the keys given)."""
        unknown = set(changes) - {"name", "description"}
        if unknown:
            raise ValidationError(f"unknown persona fields: {', '.join(sorted(unknown))}")
        with self.db.session() as s:
            row = self._row(s, persona_id, principal)
            if "name" in changes:
                row.name = _clean_name(changes["name"])
            if "description" in changes:
                row.description = _clean_description(changes["description"])
            row.updated_at = utcnow()
            s.flush()
            return persona_view(row)

    def set_default(self, persona_id: str, *, principal: Principal) -> PersonaView:
        with self.db.session() as s:
            row = self._row(s, persona_id, principal)
            self._clear_default(s, principal)
            row.is_default = True
            s.flush()
            return persona_view(row)

    def set_avatar(self, persona_id: str, image: bytes, *, principal: Principal) -> PersonaView:
        """A PNG (converted from any image Pillow reads), size- and pixel-checked first."""
        kwargs = {"max_pixels": self.max_image_pixels} if self.max_image_pixels else {}
        png = normalise_avatar(image, MAX_AVATAR_BYTES, **kwargs)
        with self.db.session() as s:
            row = self._row(s, persona_id, principal)
            row.avatar = png
            row.updated_at = utcnow()
            s.flush()
            return persona_view(row)

    def delete(self, persona_id: str, *, principal: Principal) -> None:
        """Chats that used it fall back to their own user name."""
        with self.db.session() as s:
            s.delete(self._row(s, persona_id, principal))

    # ----- for the prompt ------------------------------------------------------------
    def lookup(self, persona_id: str | None) -> PersonaView | None:
        """The persona a conversation points to, for its prompt; ``None`` if it was deleted.

        No caller: the conversation's own access check already ran (whoever may read the
        conversation sees the persona it speaks as).
        """
        if not persona_id or not is_safe_id(persona_id):
            return None
        with self.db.session() as s:
            row = s.get(PersonaRecord, persona_id)
            return persona_view(row) if row is not None else None

    # ----- internals -----------------------------------------------------------------
    def _row(self, session: Any, persona_id: str, principal: Principal) -> PersonaRecord:
        row = session.get(PersonaRecord, persona_id) if is_safe_id(persona_id) else None
        if row is None or not _is_mine(row, principal):
            raise NotFoundError(f"no persona with id {persona_id!r}")
        return row

    def _clear_default(self, session: Any, principal: Principal) -> None:
        for other in session.scalars(
            select(PersonaRecord).where(_mine(principal), PersonaRecord.is_default)
        ):
            other.is_default = False
