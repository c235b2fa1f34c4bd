"""The conversation rule on its own: who may read, change and list, and what the migration
leaves on chats started before owners were recorded."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import select, text

from agents.conversation_access import ConversationAccess, is_shared
from agents.records import ConversationRecord
from core.db import MIGRATIONS_DIR, Database
from core.errors import AuthError, ConversationAccessError, NotFoundError
from core.principal import ANONYMOUS, SYSTEM, Principal

WALLET = "0x1111111111111111111111111111111111111111"
OTHER = "0x2222222222222222222222222222222222222222"
ANN = Principal(address=None, visitor_id="a" * 32)
BOB = Principal(address=None, visitor_id="b" * 32)
ANN_SIGNED_IN = Principal(address=WALLET, via="session", visitor_id="a" * 32)
WALLET_ELSEWHERE = Principal(address=WALLET.lower(), via="api_key")
STRANGER_WALLET = Principal(address=OTHER, via="session")


def _row(owner: str | None = None, visitor: str | None = None) -> ConversationRecord:
    return ConversationRecord(id="c1", agent_id="a1", owner_address=owner, visitor_id=visitor)


def test_a_visitors_chat_is_that_browsers_alone() -> None:
    access, row = ConversationAccess(), _row(visitor="a" * 32)
    assert access.allows(row, ANN) and access.allows(row, ANN_SIGNED_IN)
    assert access.allows(row, SYSTEM)
    for stranger in (BOB, ANONYMOUS, STRANGER_WALLET, WALLET_ELSEWHERE):
        assert not access.allows(row, stranger)
        with pytest.raises(NotFoundError):
            access.require(row, stranger)
        with pytest.raises(ConversationAccessError, match="another visitor"):
            access.require(row, stranger, write=True)


def test_a_wallets_chat_follows_the_wallet_not_the_browser() -> None:
    access, row = ConversationAccess(), _row(owner=WALLET, visitor="a" * 32)
    assert access.allows(row, WALLET_ELSEWHERE)  # addresses compare without checksum case
    assert not access.allows(row, ANN)  # the browser it moved from, signed out
    with pytest.raises(ConversationAccessError, match="another wallet"):
        access.require(row, STRANGER_WALLET, write=True)


def test_shared_chats_and_the_shared_setting_are_open_to_all() -> None:
    legacy = _row()
    assert is_shared(legacy)
    for anyone in (ANN, BOB, ANONYMOUS, STRANGER_WALLET):
        ConversationAccess().require(legacy, anyone, write=True)
        ConversationAccess("shared").require(_row(visitor="a" * 32), anyone, write=True)


def test_new_chats_record_their_starter_and_need_an_identity() -> None:
    access = ConversationAccess()
    assert access.owner_of_new(ANN_SIGNED_IN) == {"owner_address": WALLET, "visitor_id": None}
    assert access.owner_of_new(BOB) == {"owner_address": None, "visitor_id": "b" * 32}
    with pytest.raises(AuthError, match="visitor identity"):
        access.owner_of_new(ANONYMOUS)
    assert ConversationAccess("shared").owner_of_new(ANONYMOUS) == {
        "owner_address": None,
        "visitor_id": None,
    }


def test_a_claim_takes_only_shared_chats() -> None:
    access, row = ConversationAccess(), _row()
    access.claim(row, BOB)
    assert (row.owner_address, row.visitor_id) == (None, "b" * 32)
    access.claim(row, BOB)  # already Bob's: nothing changes
    with pytest.raises(ConversationAccessError, match="already belongs"):
        access.claim(row, ANN)
    with pytest.raises(AuthError):
        access.claim(_row(), ANONYMOUS)


def _upgrade(db: Database, revision: str) -> None:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    with db.engine.begin() as connection:
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, revision)


def test_chats_from_before_the_migration_are_shared_and_listed_to_all(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'old.db'}")
    _upgrade(db, "0008")
    with db.engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO agents (id, name, spec, card_data, card_extra, content_hash, "
                "generation, version, created_at, updated_at) VALUES ('a1', 'Old', "
                "'chara_card_v3', '{\"name\": \"Old\"}', '{}', '0x00', '{}', 1, "
                "'2026-01-01', '2026-01-01')"
            )
        )
        conn.execute(
            text(
                "INSERT INTO conversations (id, agent_id, title, user_name, created_at, "
                "updated_at) VALUES ('c1', 'a1', 't', 'u', '2026-01-01', '2026-01-01')"
            )
        )
    _upgrade(db, "head")
    access = ConversationAccess()
    with db.session() as s:
        row = s.get(ConversationRecord, "c1")
        assert row is not None and is_shared(row)
        for anyone in (ANN, STRANGER_WALLET):
            listed = s.scalars(select(ConversationRecord.id).where(access.visible(anyone))).all()
            assert listed == ["c1"]
        s.add(ConversationRecord(id="c2", agent_id="a1", visitor_id="a" * 32))
    with db.session() as s:
        mine = s.scalars(select(ConversationRecord.id).where(access.visible(ANN))).all()
        theirs = s.scalars(select(ConversationRecord.id).where(access.visible(BOB))).all()
        assert (sorted(mine), theirs) == (["c1", "c2"], ["c1"])
    db.engine.dispose()
