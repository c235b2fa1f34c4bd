"""The agent editor's form <-> card translation (pure functions, no Gradio).

The form mirrors the card fields one to one. Saving an existing agent sends only the fields the
user changed, so anything the form does not show (a lorebook, unknown extensions, fields an
imported card never had) stays exactly as it was imported. The same comparison names what a
save changed, for the status line ("Saved Orla: description, 2 greetings, tags").
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from agents.schema import GenerationSettings
from agents.service import AgentView
from core.errors import ValidationError

# Card fields shown as text, in form order.
CARD_KEYS = (
    "name",
    "nickname",
    "description",
    "personality",
    "scenario",
    "first_mes",
    "alternate_greetings",
    "mes_example",
    "system_prompt",
    "post_history_instructions",
    "creator_notes",
    "tags",
    "creator",
    "character_version",
)
GENERATION_KEYS = ("max_new_tokens", "temperature", "top_p", "top_k", "repetition_penalty")
# Anima's own settings shown in the form (not card fields, not sampling).
SETTING_KEYS = ("visibility",)
FORM_KEYS = CARD_KEYS + GENERATION_KEYS + SETTING_KEYS
VISIBILITY_CHOICES = [
    ("Public: listed to everyone", "public"),
    ("Unlisted: anyone with its id, not listed", "unlisted"),
    ("Private: only you and your API keys", "private"),
]
INT_KEYS = {"max_new_tokens", "top_k"}

# How the save summary names each form field (the rest: the key with spaces).
FIELD_LABELS = {
    "first_mes": "first message",
    "mes_example": "example dialogues",
    "post_history_instructions": "post-history instructions",
    "character_version": "version",
    "max_new_tokens": "max new tokens",
    "top_p": "top p",
    "top_k": "top k",
}

# A line holding only this separates alternate greetings in text (cards written by hand, older
# tests); the editor itself keeps them as a list. Blank lines cannot separate: a greeting is
# often several paragraphs long.
GREETING_SEPARATOR = "---"

EXPORT_DIR = Path(tempfile.gettempdir()) / "anima-exports"
EXPORT_MAX_AGE_S = 3600


# ----- form <-> card translation ---------------------------------------------------------
def greetings_to_text(items: list[str]) -> str:
    return f"\n{GREETING_SEPARATOR}\n".join(items)


def text_to_greetings(text: str) -> list[str]:
    blocks: list[list[str]] = [[]]
    for line in (text or "").splitlines():
        if line.strip() == GREETING_SEPARATOR:
            blocks.append([])
        else:
            blocks[-1].append(line)
    return [joined for b in blocks if (joined := "\n".join(b).strip())]


def greetings_value(raw: Any) -> list[str]:
    """The greetings list the editor sent, without blank entries (an added, never filled row).

    Text (the separator form) is still understood, so a caller holding the old textarea's
    value gets the same list.
    """
    if isinstance(raw, str):
        return text_to_greetings(raw)
    return [str(item) for item in raw or [] if str(item).strip()]


def form_values(agent: AgentView | None) -> dict[str, Any]:
    """What the form shows for ``agent`` (``None``: an empty form for a new agent)."""
    data = agent.data if agent else {}
    generation = agent.generation if agent else GenerationSettings()
    values: dict[str, Any] = {}
    for key in CARD_KEYS:
        raw = data.get(key)
        if key == "alternate_greetings":
            values[key] = list(raw or [])
        elif key == "tags":
            values[key] = ", ".join(raw or [])
        else:
            values[key] = raw or ""
    for key in GENERATION_KEYS:
        values[key] = getattr(generation, key)
    values["visibility"] = agent.visibility if agent else "public"
    return values


def card_value(key: str, raw: Any) -> Any:
    """The card field value a form entry stands for."""
    if key == "alternate_greetings":
        return greetings_value(raw)
    text = raw if isinstance(raw, str) else ""
    if key == "tags":
        return [t.strip() for t in text.split(",") if t.strip()]
    if key in ("name", "nickname", "creator", "character_version"):
        text = text.strip()
        return (text or None) if key == "nickname" else text
    return text


def generation_value(key: str, raw: Any) -> int | float | None:
    if raw is None or raw == "":
        return None
    try:
        return int(raw) if key in INT_KEYS else float(raw)
    except (TypeError, ValueError) as exc:
        raise ValidationError(f"{key}: {raw!r} is not a number") from exc


def create_payload(values: dict[str, Any]) -> dict[str, Any]:
    """A ``create_agent`` payload: every card field the user filled in, plus generation."""
    payload: dict[str, Any] = {}
    for key in CARD_KEYS:
        value = card_value(key, values[key])
        if value or key == "name":
            payload[key] = value
    generation = {k: generation_value(k, values[k]) for k in GENERATION_KEYS}
    payload["generation"] = {k: v for k, v in generation.items() if v is not None}
    payload["visibility"] = values.get("visibility") or "public"
    return payload


def update_patch(agent: AgentView, values: dict[str, Any]) -> dict[str, Any]:
    """An ``update_agent`` patch holding only what differs from the stored agent."""
    before = form_values(agent)
    patch: dict[str, Any] = {}
    for key in CARD_KEYS:
        new = card_value(key, values[key])
        if new != card_value(key, before[key]):
            patch[key] = new
    generation = {}
    for key in GENERATION_KEYS:
        new = generation_value(key, values[key])
        if new is not None and new != before[key]:
            generation[key] = new
    if generation:
        patch["generation"] = generation
    if values.get("visibility") and values["visibility"] != agent.visibility:
        patch["visibility"] = values["visibility"]
    return patch


def changed_fields(agent: AgentView, patch: dict[str, Any]) -> list[str]:
    """What ``patch`` changes in ``agent``, named for people, in form order.

    Greetings are counted: "2 greetings" are two places in the list that now differ (added,
    removed or edited); a list with the same greetings in a new order is "greetings reordered".
    """
    names: list[str] = []
    for key in CARD_KEYS:
        if key not in patch:
            continue
        if key == "alternate_greetings":
            names.append(_greetings_change(agent.data.get(key) or [], patch[key]))
        else:
            names.append(FIELD_LABELS.get(key, key.replace("_", " ")))
    names += [FIELD_LABELS.get(k, k.replace("_", " ")) for k in patch.get("generation", {})]
    if "visibility" in patch:
        names.append("visibility")
    return names


def _greetings_change(before: list[str], after: list[str]) -> str:
    if sorted(before) == sorted(after):
        return "greetings reordered"
    count = sum(
        1
        for i in range(max(len(before), len(after)))
        if (before[i] if i < len(before) else None) != (after[i] if i < len(after) else None)
    )
    return f"{count} greeting" if count == 1 else f"{count} greetings"


def export_path(filename: str) -> Path:
    """A fresh file for one download; exports older than an hour are removed on the way.

    Gradio copies the file into its own cache when the handler returns, so ours only has to
    live until then; pruning here keeps the temp folder from growing without a cleanup job.
    """
    EXPORT_DIR.mkdir(parents=True, exist_ok=True)
    cutoff = time.time() - EXPORT_MAX_AGE_S
    for old in EXPORT_DIR.iterdir():
        try:
            if old.stat().st_mtime < cutoff:
                shutil.rmtree(old, ignore_errors=True)
        except OSError:
            continue
    return Path(tempfile.mkdtemp(dir=EXPORT_DIR)) / Path(filename).name
