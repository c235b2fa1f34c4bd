"""The agent's data: Character Card V2/V3 fields, Anima's own settings, chat messages.

Card models allow extra keys and are dumped with ``exclude_unset=True`` so that any field a
card brings that we do not use (unknown ``extensions`` keys, newer spec fields) survives an
import/export round trip unchanged.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

SPEC_V2 = "chara_card_v2"
SPEC_V3 = "chara_card_v3"


class _Lossless(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    def dump(self) -> dict[str, Any]:
        """Only what was set (by the card or by us), unknown keys included."""
        return self.model_dump(mode="json", exclude_unset=True, by_alias=True)


class LorebookEntry(_Lossless):
    keys: list[str] = Field(default_factory=list)
    content: str = ""
    extensions: dict[str, Any] = Field(default_factory=dict)
    enabled: bool = True
    insertion_order: int = 0
    case_sensitive: bool | None = None
    use_regex: bool | None = None  # V3
    constant: bool | None = None
    name: str | None = None
    priority: int | None = None
    id: int | str | None = None
    comment: str | None = None
    selective: bool | None = None
    secondary_keys: list[str] | None = None
    position: str | None = None  # "before_char" | "after_char"


class CharacterBook(_Lossless):
    name: str | None = None
    description: str | None = None
    scan_depth: int | None = None
    token_budget: int | None = None
    recursive_scanning: bool | None = None
    extensions: dict[str, Any] = Field(default_factory=dict)
    entries: list[LorebookEntry] = Field(default_factory=list)


class CardAsset(_Lossless):
    """V3 asset: ``uri`` is ``embeded://path`` (CHARX), ``ccdefault:``, a URL or data URI."""

    type: str
    uri: str
    name: str
    ext: str


class CardData(_Lossless):
    """The ``data`` object of a V2/V3 card. ``name`` is the one field we require."""

    name: str = Field(min_length=1)
    description: str = ""
    personality: str = ""
    scenario: str = ""
    first_mes: str = ""
    mes_example: str = ""
    creator_notes: str = ""
    system_prompt: str = ""
    post_history_instructions: str = ""
    alternate_greetings: list[str] = Field(default_factory=list)
    character_book: CharacterBook | None = None
    tags: list[str] = Field(default_factory=list)
    creator: str = ""
    character_version: str = ""
    extensions: dict[str, Any] = Field(default_factory=dict)
    # V3 additions
    assets: list[CardAsset] | None = None
    nickname: str | None = None
    creator_notes_multilingual: dict[str, str] | None = None
    source: list[str] | None = None
    group_only_greetings: list[str] | None = None
    creation_date: int | None = None
    modification_date: int | None = None


class Card(BaseModel):
    """A parsed character card: its ``data`` plus the envelope keys we must give back.

    ``spec`` is the spec the card came in (``chara_card_v2`` or ``chara_card_v3``);
    ``extra`` holds any other top-level keys (e.g. the V1 mirror fields SillyTavern writes)
    so that they can be written back on export.
    """

    spec: str = SPEC_V3
    spec_version: str = "3.0"
    data: CardData
    extra: dict[str, Any] = Field(default_factory=dict)


class GenerationSettings(BaseModel):
    """Sampling settings, per agent. ``None`` means "use the backend's default"."""

    model_config = ConfigDict(extra="forbid")

    max_new_tokens: int = Field(default=160, ge=1, le=8192)
    temperature: float = Field(default=0.8, ge=0.0, le=5.0)
    top_p: float = Field(default=0.95, gt=0.0, le=1.0)
    top_k: int = Field(default=50, ge=0)
    repetition_penalty: float = Field(default=1.3, ge=0.5, le=3.0)
    seed: int | None = None
    stop: list[str] = Field(default_factory=list)


Role = Literal["system", "user", "assistant"]


class ChatMessage(BaseModel):
    role: Role
    content: str
