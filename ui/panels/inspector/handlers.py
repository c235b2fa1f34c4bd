"""The prompt inspector's handlers and rendering: preview the prompt for a sample message, and
test-chat the card as the form has it now (saved or not).

The form's values reach the handlers positionally in ``FORM_KEYS`` order; what differs from
the stored agent becomes the draft (so a visitor previewing a public agent sends no draft, and
the owner's unsaved edits are what the model sees). Rendering is pure functions of the
service's ``PromptPreview``; handlers return named updates, tested without a browser.
"""

from __future__ import annotations

import html
from collections.abc import Iterator
from typing import Any

import gradio as gr

from agents.prompt_preview import LoreItem, PreviewPart, PromptPreview
from agents.schema import ChatMessage
from container import Services
from core.errors import AnimaError
from core.principal import Principal
from ui.agents.form import CARD_KEYS, FORM_KEYS, update_patch
from ui.common import keep_choice, show_error
from ui.wiring import Updates

Message = dict[str, Any]
NO_CONVERSATION = ("None: a new chat", "")
PICK_FIRST = "Pick a saved agent first (a new agent can be previewed once it is saved)."


# ----- the form as a draft -------------------------------------------------------------------
def draft_of(
    services: Services, agent_id: str, form: tuple[Any, ...]
) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """The card fields and generation settings the form changes from the stored agent."""
    values = dict(zip(FORM_KEYS, form, strict=True))
    patch = update_patch(services.agents.get_agent(agent_id), values)
    draft = {k: v for k, v in patch.items() if k in CARD_KEYS}
    return (draft or None), patch.get("generation")


# ----- rendering -------------------------------------------------------------------------------
def _bar(tokens: int, window: int) -> str:
    share = 0.0 if window <= 0 else min(100.0, 100.0 * tokens / window)
    return (
        f'<span class="insp-bar" title="{share:.1f}% of the window">'
        f'<span style="width:{share:.2f}%"></span></span>'
    )


def render_part(part: PreviewPart, window: int) -> str:
    badges = ""
    if part.key:
        badges += f' <span class="insp-key">key: {html.escape(part.key)}</span>'
    if part.pinned:
        badges += ' <span class="insp-key">pinned</span>'
    return (
        f'<details class="insp-part insp-{html.escape(part.kind)}">'
        f'<summary class="insp-row"><span class="insp-arrow"></span>'
        f'<span class="insp-label">{html.escape(part.label)}{badges}</span>'
        f'<span class="insp-tokens">{part.tokens} tokens</span>{_bar(part.tokens, window)}'
        f"</summary><pre>{html.escape(part.text)}</pre></details>"
    )


def render_summary(view: PromptPreview) -> str:
    """The total against the window, and what had to give way."""
    total = view.prompt_tokens + view.max_new_tokens
    lines = [
        f"**{view.prompt_tokens} prompt tokens** + {view.max_new_tokens} for the reply = "
        f"{total} of {view.context_window} in the context window ({view.model}).",
    ]
    gave_way = []
    if view.dropped_history:
        gave_way.append(f"{view.dropped_history} older messages")
    if view.examples_left_out:
        gave_way.append(f"{view.examples_left_out} example dialogues")
    if view.lore_left_out:
        gave_way.append(f"{len(view.lore_left_out)} lorebook entries")
    if view.knowledge_left_out:
        gave_way.append(f"{len(view.knowledge_left_out)} knowledge excerpts")
    if gave_way:
        lines.append("Left out to fit: " + ", ".join(gave_way) + ".")
    if view.truncated_last_turn:
        lines.append("Your message was cut from its start to fit.")
    return "\n\n".join(lines)


def render_parts(view: PromptPreview) -> str:
    rows = [render_part(p, view.context_window) for p in view.parts]
    used = view.prompt_tokens + view.max_new_tokens
    total = (
        '<div class="insp-row insp-total"><span></span><span>Prompt and reply</span>'
        f'<span class="insp-tokens">{used} / {view.context_window}</span>'
        f"{_bar(used, view.context_window)}</div>"
    )
    return f'<div class="insp-parts">{total}{"".join(rows)}</div>'


def _lore_rows(items: list[LoreItem]) -> list[str]:
    return [
        f"- **{html.escape(e.name)}**: key `{html.escape(e.key or '?')}`, {e.tokens} tokens"
        for e in items
    ]


def render_lore(view: PromptPreview) -> str:
    """Fired entries with their keys, then everything the budget left out."""
    lines = ["**Lorebook entries that fired**"]
    lines += _lore_rows(view.lore_fired) or ["- none: no key of the lorebook is in the chat"]
    if view.lore_left_out:
        lines += ["", "**Lorebook entries left out (over the book's token budget)**"]
        lines += _lore_rows(view.lore_left_out)
    if view.knowledge_used or view.knowledge_left_out:
        lines += ["", "**Knowledge excerpts used**"]
        lines += [
            f"- [{k.marker}] {html.escape(k.document)}"
            + (f", page {k.page}" if k.page else "")
            + f": {k.tokens} tokens"
            for k in view.knowledge_used
        ] or ["- none fitted"]
    if view.knowledge_left_out:
        lines += ["", "**Knowledge excerpts left out (no room)**"]
        lines += [f"- [{k.marker}] {html.escape(k.document)}" for k in view.knowledge_left_out]
    return "\n".join(lines)


# ----- handlers ----------------------------------------------------------------------------
def conversations(
    services: Services, agent_id: str | None, current: str | None = None, *, principal: Principal
) -> Updates:
    """The caller's own chats with the agent, to preview the next reply in one of them (the
    one picked stays picked while it exists)."""
    choices = [NO_CONVERSATION]
    if agent_id:
        try:
            chats = services.chat.list_conversations(agent_id, principal=principal)
        except AnimaError:
            chats = []
        choices += [((c.title or "Untitled chat")[:60] + f" · {c.id[:6]}", c.id) for c in chats]
    return {"conversation": gr.update(choices=choices, value=keep_choice(current, choices) or "")}


def preview(
    services: Services,
    agent_id: str | None,
    message: str,
    conversation_id: str | None,
    *form: Any,
    principal: Principal,
) -> Updates:
    if not agent_id:
        return {"status": show_error(PICK_FIRST)}
    try:
        draft, generation = draft_of(services, agent_id, form)
        view = services.inspector.preview(
            agent_id,
            message,
            conversation_id=conversation_id or None,
            draft=draft,
            generation=generation,
            principal=principal,
        )
    except AnimaError as exc:
        return {"status": show_error(exc)}
    return {
        "status": "",
        "summary": render_summary(view),
        "parts": render_parts(view),
        "lore": render_lore(view),
        "rendered": view.rendered or "(the model's server applies its own chat template)",
    }


def send_test(
    services: Services,
    agent_id: str | None,
    shown: list[Message] | None,
    text: str,
    *form: Any,
    principal: Principal,
) -> Iterator[Updates]:
    """Stream the draft's reply into the test chat; nothing is stored anywhere."""
    if not agent_id:
        yield {"test_status": show_error(PICK_FIRST)}
        return
    history = [
        ChatMessage(role=m["role"], content=_text(m["content"]))
        for m in shown or []
        if m.get("role") in ("user", "assistant")
    ]
    try:
        draft, generation = draft_of(services, agent_id, form)
        if not history:
            history = services.inspector.test_opening(agent_id, draft=draft, principal=principal)
        reply = services.inspector.test_chat(
            agent_id, history, text, draft=draft, generation=generation, principal=principal
        )
    except AnimaError as exc:
        yield {"test_status": show_error(exc)}
        return
    base = [*({"role": m.role, "content": m.content} for m in history)]
    base.append({"role": "user", "content": text})
    yield {"test_chat": base, "test_text": "", "test_status": ""}
    reply_text = ""
    try:
        for delta in reply:
            reply_text += delta
            yield {"test_chat": [*base, {"role": "assistant", "content": reply_text}]}
    except AnimaError as exc:
        yield {"test_status": show_error(exc)}


def clear_test(services: Services) -> Updates:
    return {"test_chat": [], "test_text": "", "test_status": ""}


def _text(content: Any) -> str:
    """A chat bubble's text (Gradio may hand back a list of parts)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") if isinstance(p, dict) else str(p) for p in content)
    return str(content or "")
