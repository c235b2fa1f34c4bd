"""Agents: create, read, update, delete, and import/export as character cards.

This is the one place that knows how an agent is stored (a row plus a folder of files under
``<data_dir>/agents/<id>/``). The Gradio UI and the HTTP API both call it, so they cannot
drift apart. Every write either completes or leaves the store as it was: files are staged in
a temporary folder and swapped in only after the database transaction commits.

The view models live in ``agents.views``; the columns the chain records about an agent's token
are written through ``agents.chain_columns``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
import uuid
from pathlib import Path
from typing import Any, Literal

from pydantic import ValidationError as PydanticValidationError
from sqlalchemy import func, select

from agents import cards
from agents.agent_search import AgentSearch, search_columns
from agents.anima_extension import anima_from_extensions, with_anima_extension
from agents.attachments import AgentAttachment
from agents.avatar import normalise_avatar
from agents.chain_columns import ChainColumns
from agents.llm.pool import check_adapter_ref, check_model_ref
from agents.lorebook import check_regex_keys
from agents.prompt import char_name, render_macros
from agents.records import AgentRecord, utcnow
from agents.schema import SPEC_V2, SPEC_V3, Card, CardData, GenerationSettings
from agents.views import VISIBILITIES, AgentListener, AgentView, CardFile, merge_generation
from agents.visibility import AgentVisibility
from core.db import Database
from core.errors import (
    CardFormatError,
    NotFoundError,
    UploadTooLargeError,
    ValidationError,
    describe_validation_error,
)
from core.files import atomic_write, check_id, is_safe_id, replace_dir, safe_join
from core.principal import OwnerCheck, Principal
from core.settings import Settings

log = logging.getLogger(__name__)

CardFormat = Literal["png", "json", "charx"]
AVATAR_FILE = "avatar.png"  # the name agents stored before avatar files were versioned
ASSETS_DIR = "assets"  # legacy: one file per asset (agents imported before assets.zip)
ASSETS_ARCHIVE = "assets.zip"
# Keys of a create/update payload that are Anima's own, not card fields.
ANIMA_KEYS = ("generation", "model", "adapter", "visibility")


class _Unwired:
    """Refuses every change until ``container.py`` sets the real owner check: an agent
    service that was never wired must not let anyone change anything."""

    def _refuse(self, *_: Any) -> Any:
        raise RuntimeError("AgentService.owner_check is not set (see container.py)")

    require_owner = require_address = require_creator = _refuse


class AgentService(ChainColumns, AgentVisibility, AgentSearch):
    """Every method that changes an agent takes the caller (``principal``) and asks
    ``owner_check`` first. What a caller may read depends on the agent's visibility: the
    ``*_visible`` methods (``agents.visibility``) take the caller and answer as if a private
    agent of someone else did not exist (404, never 403: its existence is not told). The
    plain reads are the app's own (replies, jobs, the chain), for code that already holds an
    id it may use."""

    def __init__(self, settings: Settings, db: Database) -> None:
        self.settings = settings
        self.db = db
        # Resources that travel with the CHARX and go with the agent (adapters, ...).
        self.attachments: list[AgentAttachment] = []
        self.listeners: list[AgentListener] = []
        # The chain service, built after this one (it reads agents), is set in container.py.
        self.owner_check: OwnerCheck = _Unwired()

    def _notify(self, event: str, arg: Any) -> None:
        for listener in self.listeners:
            try:
                getattr(listener, event)(arg)
            except Exception as exc:
                log.warning("%s listener %s failed: %s", event, type(listener).__name__, exc)

    # ----- reading -------------------------------------------------------------------
    def list_agents(self, limit: int | None = None, offset: int = 0) -> list[AgentView]:
        """Oldest first; ``limit``/``offset`` page through them (the API always pages)."""
        query = select(AgentRecord).order_by(AgentRecord.created_at, AgentRecord.id)
        if offset:
            query = query.offset(offset)
        if limit is not None:
            query = query.limit(limit)
        with self.db.session() as s:
            return [self._view(r) for r in s.scalars(query).all()]

    def count_agents(self) -> int:
        with self.db.session() as s:
            return int(s.scalar(select(func.count()).select_from(AgentRecord)) or 0)

    def get_agent(self, agent_id: str) -> AgentView:
        with self.db.session() as s:
            return self._view(self._row(s, agent_id))

    def get_card(self, agent_id: str) -> Card:
        with self.db.session() as s:
            return self._card(self._row(s, agent_id))

    def get_with_card(self, agent_id: str) -> tuple[AgentView, Card]:
        """The agent and its card from one read (what every reply needs)."""
        with self.db.session() as s:
            row = self._row(s, agent_id)
            return self._view(row), self._card(row)

    def avatar(self, agent_id: str) -> bytes | None:
        with self.db.session() as s:
            row = self._row(s, agent_id)
            name = row.avatar_file
        if name is None:
            return None
        return self._avatar_path(agent_id, name).read_bytes()

    # ----- writing -------------------------------------------------------------------
    def create_agent(
        self,
        payload: dict[str, Any],
        avatar: bytes | None = None,
        *,
        principal: Principal,
        owner: str | None = None,
    ) -> AgentView:
        """Create from card fields (``name``, ``description``, ...) plus Anima's own keys.

        ``owner``: the signed-in wallet creating it (``None``: an agent nobody owns).
        """
        self.owner_check.require_creator(principal)
        payload = dict(payload)
        anima = {k: payload.pop(k) for k in ANIMA_KEYS if k in payload}
        now = int(time.time())
        payload.setdefault("creation_date", now)
        payload.setdefault("modification_date", now)
        data = self._validate_data(payload)
        card = Card(spec=SPEC_V3, spec_version="3.0", data=data)
        return self._insert(card, anima, avatar=avatar, assets={}, owner=owner)

    def update_agent(
        self, agent_id: str, patch: dict[str, Any], *, principal: Principal
    ) -> AgentView:
        """Merge ``patch`` into the stored card; keys not named stay exactly as they were."""
        self.owner_check.require_owner(principal, agent_id)
        patch = dict(patch)
        anima = {k: patch.pop(k) for k in ANIMA_KEYS if k in patch}
        with self.db.session() as s:
            row = self._row(s, agent_id)
            before = row.content_hash
            merged = {**row.card_data, **patch}
            if patch:
                merged["modification_date"] = int(time.time())
            data = self._validate_data(merged)
            self._apply_anima(row, anima)
            self._store_card(row, self._card(row).model_copy(update={"data": data}))
            row.version += 1
            row.updated_at = utcnow()
            s.flush()
            view = self._view(row)
        if view.content_hash != before:
            self._notify("card_changed", view)
        return view

    def set_avatar(self, agent_id: str, image: bytes, *, principal: Principal) -> AgentView:
        """Store a new avatar; the old one stays in place until the database has committed.

        Each avatar file is named after its content, so the new file never overwrites the
        one the stored row points to: a failed commit deletes the new file and leaves the
        agent exactly as it was.
        """
        self.owner_check.require_owner(principal, agent_id)
        png = normalise_avatar(
            image, self.settings.server.max_upload_bytes, self.settings.server.max_image_pixels
        )
        name = _avatar_name(png)
        folder = self._agent_dir(agent_id)
        written: Path | None = None
        old: str | None = None
        try:
            with self.db.session() as s:
                row = self._row(s, agent_id)
                old = row.avatar_file
                target = folder / name
                if not target.exists():
                    atomic_write(target, png)
                    written = target
                row.avatar_file = name
                row.updated_at = utcnow()
                s.flush()
                view = self._view(row)
        except BaseException:
            if written is not None:
                written.unlink(missing_ok=True)
            raise
        if old and old != name:
            self._avatar_path(agent_id, old).unlink(missing_ok=True)
        return view

    def delete_agent(self, agent_id: str, *, principal: Principal) -> None:
        self.owner_check.require_owner(principal, agent_id)
        self._delete(agent_id)

    def _delete(self, agent_id: str) -> None:
        with self.db.session() as s:
            row = self._row(s, agent_id)
            s.delete(row)
        shutil.rmtree(self._agent_dir(agent_id), ignore_errors=True)
        self._notify("agent_deleted", agent_id)
        for attachment in self.attachments:
            attachment.agent_deleted(agent_id)

    # ----- cards ---------------------------------------------------------------------
    def import_card(
        self,
        filename: str | None,
        content: bytes,
        *,
        principal: Principal,
        owner: str | None = None,
    ) -> AgentView:
        """Create an agent from a PNG, JSON or CHARX character card (``owner`` as in create)."""
        self.owner_check.require_creator(principal)
        self.check_upload_size(content)
        if not content:
            raise CardFormatError("the uploaded file is empty")
        # The file itself was checked against the upload limit; a CHARX may unpack to 5x, a
        # PNG's card chunk may inflate to the upload limit, its image is capped in pixels.
        imported = cards.read_card_file(
            filename,
            content,
            self.settings.server.max_upload_bytes * 5,
            max_pixels=self.settings.server.max_image_pixels,
            max_text_bytes=self.settings.server.max_upload_bytes,
        )
        card, avatar, assets = imported.card, imported.avatar, imported.assets
        _check_lorebook(card.data)
        anima = anima_from_extensions(card.data)
        if anima.get("visibility") == "private" and owner is None:
            anima["visibility"] = "unlisted"  # nobody could see it: the closest it can be
        staged = [(a, a.take_import(assets)) for a in self.attachments]  # checked before storing
        view = self._insert(card, anima, avatar=avatar, assets=assets, owner=owner)
        if not any(item is not None for _, item in staged):
            return view
        try:
            for attachment, item in staged:
                if item is not None:
                    attachment.attach(view.id, item)
        except BaseException:
            self._delete(view.id)  # all or nothing: no agent without what it came with
            raise
        return self.get_agent(view.id)

    def export_card(
        self, agent_id: str, fmt: CardFormat = "png", spec: Literal["v2", "v3"] = "v3"
    ) -> CardFile:
        with self.db.session() as s:
            row = self._row(s, agent_id)
            card = with_anima_extension(self._card(row), row)
            folder = self._agent_dir(row.id)
            avatar = (
                self._avatar_path(row.id, row.avatar_file).read_bytes() if row.avatar_file else None
            )
        stem = _file_stem(card.data.name, agent_id)
        if fmt == "png":
            return CardFile(
                content=cards.write_png_card(card, avatar),
                media_type="image/png",
                filename=f"{stem}.png",
            )
        if fmt == "json":
            body = json.dumps(cards.card_to_json(card, spec), ensure_ascii=False, indent=2)
            return CardFile(
                content=body.encode(), media_type="application/json", filename=f"{stem}.json"
            )
        if fmt == "charx":
            assets = self._read_assets(folder)
            for attachment in self.attachments:
                assets.update(attachment.export_files(agent_id))
            return CardFile(
                content=cards.write_charx(card, assets),
                media_type="application/zip",
                filename=f"{stem}.charx",
            )
        raise ValidationError(f"unknown card format {fmt!r}: use png, json or charx")

    def check_upload_size(self, content: bytes) -> None:
        limit = self.settings.server.max_upload_bytes
        if len(content) > limit:
            raise UploadTooLargeError(
                f"file is {len(content) / 1e6:.1f} MB; the limit is {limit / 1e6:.1f} MB "
                "(ANIMA_MAX_UPLOAD_MB)"
            )

    # ----- internals -----------------------------------------------------------------
    def _insert(
        self,
        card: Card,
        anima: dict[str, Any],
        *,
        avatar: bytes | None,
        assets: dict[str, bytes],
        owner: str | None = None,
    ) -> AgentView:
        agent_id = uuid.uuid4().hex
        root = self.settings.agents_dir
        root.mkdir(parents=True, exist_ok=True)
        staging = root / f".staging-{agent_id}"
        staging.mkdir()
        try:
            avatar_name: str | None = None
            if avatar is not None:
                png = normalise_avatar(
                    avatar,
                    self.settings.server.max_upload_bytes,
                    self.settings.server.max_image_pixels,
                )
                avatar_name = _avatar_name(png)
                atomic_write(staging / avatar_name, png)
            if assets:  # one file, one fsync, however many assets the card brings
                atomic_write(staging / ASSETS_ARCHIVE, cards.write_asset_archive(assets))
            with self.db.session() as s:
                row = AgentRecord(
                    id=agent_id,
                    spec=card.spec,
                    card_extra=card.extra,
                    avatar_file=avatar_name,
                    version=1,
                    owner_address=owner,
                )
                self._apply_anima(row, anima)
                self._store_card(row, card)
                s.add(row)
                s.flush()
                view = self._view(row)
                # Files go live before the commit; if the commit fails they are removed.
                replace_dir(staging, self._agent_dir(agent_id))
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            if not self._exists(agent_id):
                shutil.rmtree(root / agent_id, ignore_errors=True)
            raise
        if self.listeners:
            self._notify("agent_created", view)
            return self.get_agent(agent_id)  # a listener may have started its mint
        return view

    def _exists(self, agent_id: str) -> bool:
        with self.db.session() as s:
            return s.get(AgentRecord, agent_id) is not None

    def _apply_anima(self, row: AgentRecord, anima: dict[str, Any]) -> None:
        if "generation" in anima:
            merged = merge_generation(row.generation or {}, anima["generation"] or {})
            row.generation = merged.model_dump(mode="json")
        elif not row.generation:
            row.generation = GenerationSettings().model_dump(mode="json")
        if "visibility" in anima:
            row.visibility = _check_visibility(anima["visibility"], row.owner_address)
        checks = {"model": check_model_ref, "adapter": check_adapter_ref}
        for key, check in checks.items():
            if key in anima:
                value = anima[key]
                if value is not None and not isinstance(value, str):
                    raise ValidationError(f"{key} must be a string or null")
                value = (value or "").strip() or None
                setattr(row, key, check(value) if value else None)

    def _store_card(self, row: AgentRecord, card: Card) -> None:
        row.card_data = card.data.dump()
        row.name = card.data.name[:200]
        row.content_hash = cards.content_hash(card)
        for column, value in search_columns(card.data.name, card.data.tags).items():
            setattr(row, column, value)

    def _validate_data(self, data: dict[str, Any]) -> CardData:
        try:
            card = CardData.model_validate(data)
        except PydanticValidationError as exc:
            raise ValidationError(describe_validation_error(exc)) from exc
        _check_lorebook(card)
        return card

    def _row(self, session: Any, agent_id: str) -> AgentRecord:
        row = session.get(AgentRecord, agent_id) if is_safe_id(agent_id) else None
        if row is None:
            raise NotFoundError(f"no agent with id {agent_id!r}")
        return row

    def _card(self, row: AgentRecord) -> Card:
        data = CardData.model_validate(row.card_data)
        return Card(
            spec=row.spec, spec_version=_spec_version(row.spec), data=data, extra=row.card_extra
        )

    def _view(self, row: AgentRecord) -> AgentView:
        return AgentView(
            id=row.id,
            name=row.name,
            spec=row.spec,
            # Every field, defaults included, so API clients need not know the card spec.
            data=CardData.model_validate(row.card_data).model_dump(mode="json"),
            generation=GenerationSettings.model_validate(row.generation or {}),
            model=row.model,
            adapter=row.adapter,
            owner_address=row.owner_address,
            visibility=row.visibility or "public",
            token_id=row.token_id,
            mint_state=row.mint_state,
            token_contract=row.token_contract,
            chain_id=row.chain_id,
            chain_card_hash=row.chain_card_hash,
            chain_card_version=row.chain_card_version,
            content_hash=row.content_hash,
            version=row.version,
            has_avatar=row.avatar_file is not None,
            created_at=row.created_at,
            updated_at=row.updated_at,
        )

    def _agent_dir(self, agent_id: str) -> Path:
        return self.settings.agents_dir / check_id(agent_id, "agent id")

    def _avatar_path(self, agent_id: str, name: str) -> Path:
        return safe_join(self._agent_dir(agent_id), name)

    def _read_assets(self, folder: Path) -> dict[str, bytes]:
        archive = folder / ASSETS_ARCHIVE
        if archive.is_file():
            return cards.read_asset_archive(archive.read_bytes())
        base = folder / ASSETS_DIR
        if not base.is_dir():
            return {}
        return {
            p.relative_to(base).as_posix(): p.read_bytes()
            for p in sorted(base.rglob("*"))
            if p.is_file()
        }


def _check_lorebook(data: CardData) -> None:
    """Pattern keys must run on RE2 (see :mod:`agents.lorebook`); macros as in a reply."""
    char = char_name(data)
    check_regex_keys(data.character_book, lambda text: render_macros(text, char, "User"))


def _avatar_name(png: bytes) -> str:
    """Content-addressed, so a new avatar never overwrites the file a stored row points to."""
    return f"avatar-{hashlib.sha256(png).hexdigest()[:16]}.png"


def _spec_version(spec: str) -> str:
    return "2.0" if spec == SPEC_V2 else "3.0"


def _check_visibility(value: Any, owner: str | None) -> str:
    if value not in VISIBILITIES:
        raise ValidationError(f"visibility must be one of {', '.join(VISIBILITIES)}, not {value!r}")
    if value == "private" and owner is None:
        raise ValidationError(
            "an agent nobody owns cannot be private (nobody could see it): sign in to create "
            "it, or make it unlisted"
        )
    return str(value)


def _file_stem(name: str, fallback: str) -> str:
    stem = "".join(c if c.isalnum() or c in "-_ " else "_" for c in name).strip()
    return (stem or fallback)[:80]
