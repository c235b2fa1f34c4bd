"""Anima's own block in a card, ``extensions.anima``: the generation settings and visibility
an exported card carries, so that importing it again restores them. Kept apart from the
agent service because it is card format, not storage: what validates is read, the rest is
left out.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError as PydanticValidationError

from agents.records import AgentRecord
from agents.schema import Card, CardData, GenerationSettings
from agents.views import VISIBILITIES


def anima_from_extensions(data: CardData) -> dict[str, Any]:
    """A card exported by Anima carries its generation settings and visibility in
    ``extensions.anima``; what does not validate is left out."""
    ext = data.extensions.get("anima")
    found: dict[str, Any] = {}
    if not isinstance(ext, dict):
        return found
    if isinstance(ext.get("generation"), dict):
        try:
            gen = GenerationSettings.model_validate(ext["generation"])
            found["generation"] = gen.model_dump(mode="json")
        except PydanticValidationError:
            pass
    if ext.get("visibility") in VISIBILITIES:
        found["visibility"] = ext["visibility"]
    return found


def with_anima_extension(card: Card, row: AgentRecord) -> Card:
    """Carry non-default generation settings and visibility in ``extensions.anima`` so they
    survive export."""
    generation = row.generation or {}
    visibility = row.visibility or "public"
    ext = card.data.extensions.get("anima")
    default = generation == GenerationSettings().model_dump(mode="json")
    if default and visibility == "public" and ext is None:
        return card
    data = card.data.model_copy(deep=True)
    anima = dict(ext) if isinstance(ext, dict) else {}
    anima["generation"] = generation
    if visibility != "public":
        anima["visibility"] = visibility
    else:
        anima.pop("visibility", None)
    data.extensions = {**data.extensions, "anima": anima}
    return card.model_copy(update={"data": data})
