"""The Agents tab: pick, create, edit, delete and export agents (character cards).

The form mirrors the card fields one to one. Saving an existing agent sends only the fields the
user changed, so anything the form does not show (a lorebook, unknown extensions, fields an
imported card never had) stays exactly as it was imported.
"""

from __future__ import annotations

import io
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr
from gradio.events import Dependency
from PIL import Image

from agents.schema import GenerationSettings
from agents.service import AgentView
from container import Services
from core.errors import AnimaError, ValidationError
from ui.chain_panel import build_chain_panel
from ui.common import agent_choices, principal_of, show_error
from ui.finetune_panel import build_finetune_panel
from ui.knowledge_panel import build_knowledge_panel
from ui.voice_panel import build_voice_panel

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
FORM_KEYS = CARD_KEYS + GENERATION_KEYS
INT_KEYS = {"max_new_tokens", "top_k"}

# A line holding only this separates alternate greetings. Blank lines cannot: a greeting is
# often several paragraphs long.
GREETING_SEPARATOR = "---"

EXPORT_DIR = Path(tempfile.gettempdir()) / "anima-exports"
EXPORT_MAX_AGE_S = 3600


@dataclass
class AgentsTab:
    """What the studio needs to keep other tabs in step with this one."""

    picker: gr.Dropdown
    # Events after which agents may have been added, renamed or removed.
    list_changed: list[Dependency]


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


def form_values(agent: AgentView | None) -> dict[str, Any]:
    """What the form shows for ``agent`` (``None``: an empty form for a new agent)."""
    data = agent.data if agent else {}
    generation = agent.generation if agent else GenerationSettings()
    values: dict[str, Any] = {}
    for key in CARD_KEYS:
        raw = data.get(key)
        if key == "alternate_greetings":
            values[key] = greetings_to_text(raw or [])
        elif key == "tags":
            values[key] = ", ".join(raw or [])
        else:
            values[key] = raw or ""
    for key in GENERATION_KEYS:
        values[key] = getattr(generation, key)
    return values


def card_value(key: str, raw: Any) -> Any:
    """The card field value a form entry stands for."""
    text = raw if isinstance(raw, str) else ""
    if key == "alternate_greetings":
        return text_to_greetings(text)
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
    return patch


# ----- the tab -----------------------------------------------------------------------------
def build_agents_tab(services: Services) -> AgentsTab:
    """Lay out the tab inside the caller's ``gr.Tab`` and wire its events."""
    defaults = form_values(None)
    fields: dict[str, gr.components.Component] = {}

    with gr.Row():
        picker = gr.Dropdown(
            choices=agent_choices(services),
            value=None,
            label="Agent",
            info="Pick an agent to edit, or start a new one.",
            elem_id="agent-select",
            scale=4,
        )
        new_btn = gr.Button("New agent", elem_id="agent-new", scale=1)

    with gr.Row():
        with gr.Column(scale=1, min_width=240):
            avatar = gr.Image(
                label="Avatar",
                type="filepath",
                format="png",
                sources=["upload"],
                height=260,
                elem_id="agent-avatar",
            )
            avatar_changed = gr.State(False)
            save_btn = gr.Button("Save", variant="primary", elem_id="agent-save")
            status = gr.Markdown("", elem_id="agent-status")
            with gr.Accordion("Export card", open=False):
                spec = gr.Radio(
                    ["v3", "v2"],
                    value="v3",
                    label="Card spec (JSON)",
                    elem_id="agent-export-spec",
                )
                with gr.Row():
                    export_btns = {
                        fmt: gr.Button(fmt.upper(), size="sm", elem_id=f"agent-export-{fmt}")
                        for fmt in ("png", "json", "charx")
                    }
                export_file = gr.File(
                    label="Download", interactive=False, elem_id="agent-export-file"
                )
            chain_panel = build_chain_panel(services, picker)  # on-chain identity
            delete_btn = gr.Button("Delete agent", variant="stop", elem_id="agent-delete")
            with gr.Row(visible=False) as confirm_row:
                confirm_btn = gr.Button(
                    "Yes, delete it", variant="stop", size="sm", elem_id="agent-delete-confirm"
                )
                cancel_btn = gr.Button("Cancel", size="sm", elem_id="agent-delete-cancel")

        with gr.Column(scale=3):
            with gr.Row():
                fields["name"] = gr.Textbox(label="Name", elem_id="agent-name", scale=2)
                fields["nickname"] = gr.Textbox(
                    label="Nickname", info="Used for {{char}} if set.", elem_id="agent-nickname"
                )
            fields["description"] = gr.Textbox(
                label="Description", lines=4, max_lines=20, elem_id="agent-description"
            )
            fields["personality"] = gr.Textbox(
                label="Personality", lines=2, max_lines=10, elem_id="agent-personality"
            )
            fields["scenario"] = gr.Textbox(
                label="Scenario", lines=2, max_lines=10, elem_id="agent-scenario"
            )
            fields["first_mes"] = gr.Textbox(
                label="First message (greeting)", lines=3, max_lines=15, elem_id="agent-first-mes"
            )
            fields["alternate_greetings"] = gr.Textbox(
                label="Alternate greetings",
                info=f"Separate greetings with a line holding only {GREETING_SEPARATOR}",
                lines=3,
                max_lines=15,
                elem_id="agent-alt-greetings",
            )
            with gr.Accordion("Prompt", open=False):
                fields["mes_example"] = gr.Textbox(
                    label="Example dialogues",
                    info="Start each example with <START>; write {{user}}: and {{char}}: lines.",
                    lines=4,
                    max_lines=20,
                    elem_id="agent-mes-example",
                )
                fields["system_prompt"] = gr.Textbox(
                    label="System prompt",
                    info="Replaces the default; {{original}} keeps it.",
                    lines=2,
                    max_lines=10,
                    elem_id="agent-system-prompt",
                )
                fields["post_history_instructions"] = gr.Textbox(
                    label="Post-history instructions",
                    lines=2,
                    max_lines=10,
                    elem_id="agent-post-history",
                )
            with gr.Accordion("Card details", open=False):
                fields["creator_notes"] = gr.Textbox(
                    label="Creator notes", lines=2, max_lines=10, elem_id="agent-creator-notes"
                )
                fields["tags"] = gr.Textbox(
                    label="Tags", info="Comma separated.", elem_id="agent-tags"
                )
                with gr.Row():
                    fields["creator"] = gr.Textbox(label="Creator", elem_id="agent-creator")
                    fields["character_version"] = gr.Textbox(
                        label="Character version", elem_id="agent-version"
                    )
            with gr.Accordion("Generation", open=True):
                with gr.Row():
                    fields["max_new_tokens"] = gr.Number(
                        value=defaults["max_new_tokens"],
                        label="Max new tokens",
                        precision=0,
                        minimum=1,
                        maximum=8192,
                        elem_id="agent-max-new-tokens",
                    )
                    fields["temperature"] = gr.Slider(
                        0.0,
                        2.0,
                        value=defaults["temperature"],
                        step=0.05,
                        label="Temperature",
                        elem_id="agent-temperature",
                    )
                    fields["top_p"] = gr.Slider(
                        0.05,
                        1.0,
                        value=defaults["top_p"],
                        step=0.01,
                        label="Top p",
                        elem_id="agent-top-p",
                    )
                with gr.Row():
                    fields["top_k"] = gr.Number(
                        value=defaults["top_k"],
                        label="Top k (0: off)",
                        precision=0,
                        minimum=0,
                        elem_id="agent-top-k",
                    )
                    fields["repetition_penalty"] = gr.Slider(
                        0.5,
                        2.0,
                        value=defaults["repetition_penalty"],
                        step=0.05,
                        label="Repetition penalty",
                        elem_id="agent-repetition-penalty",
                    )

    with gr.Accordion("Knowledge", open=False, elem_id="agent-knowledge"):
        build_knowledge_panel(services, picker)

    build_voice_panel(services, picker)
    with gr.Accordion("Fine-tune (LoRA adapter)", open=False, elem_id="agent-finetune"):
        build_finetune_panel(services, picker)

    form = [fields[k] for k in FORM_KEYS]
    detail = [*form, avatar, avatar_changed, status]

    def show(agent: AgentView | None, message: str) -> list[Any]:
        values = form_values(agent)
        image = None
        if agent is not None and agent.has_avatar:
            blob = services.agents.avatar(agent.id)
            image = Image.open(io.BytesIO(blob)) if blob else None
        return [*(values[k] for k in FORM_KEYS), image, False, message]

    def unchanged(message: str) -> list[Any]:
        return [*(gr.skip() for _ in range(len(detail) - 1)), message]

    def load(agent_id: str | None) -> list[Any]:
        if not agent_id:
            return [*show(None, ""), gr.update(visible=False)]
        try:
            return [*show(services.agents.get_agent(agent_id), ""), gr.update(visible=False)]
        except AnimaError as exc:
            return [*unchanged(show_error(exc)), gr.update(visible=False)]

    def new() -> list[Any]:
        return [gr.update(value=None), *show(None, "New agent: fill in the form and Save.")]

    def save(
        agent_id: str | None,
        avatar_path: str | None,
        changed: bool,
        request: gr.Request,
        *raw: Any,
    ) -> list[Any]:
        values = dict(zip(FORM_KEYS, raw, strict=True))
        image = Path(avatar_path).read_bytes() if changed and avatar_path else None
        principal = principal_of(services, request)
        try:
            if agent_id:
                agent = services.agents.get_agent(agent_id)
                patch = update_patch(agent, values)
                if patch:
                    agent = services.agents.update_agent(agent_id, patch, principal=principal)
                if image is not None:
                    agent = services.agents.set_avatar(agent_id, image, principal=principal)
                message = f"Saved **{agent.name}**."
            else:
                agent = services.agents.create_agent(
                    create_payload(values),
                    avatar=image,
                    principal=principal,
                    owner=principal.address,
                )
                message = f"Created **{agent.name}**."
        except AnimaError as exc:
            return [gr.skip(), *unchanged(show_error(exc))]
        picker_update = gr.update(choices=agent_choices(services), value=agent.id)
        return [picker_update, *show(agent, message)]

    def ask_delete(agent_id: str | None) -> list[Any]:
        if not agent_id:
            return [gr.update(visible=False), "Nothing to delete: no agent is selected."]
        return [gr.update(visible=True), "Delete this agent and all its chats? Confirm below."]

    def delete(agent_id: str | None, request: gr.Request) -> list[Any]:
        hide = gr.update(visible=False)
        if not agent_id:
            return [gr.skip(), *unchanged(""), hide]
        try:
            name = services.agents.get_agent(agent_id).name
            services.agents.delete_agent(agent_id, principal=principal_of(services, request))
        except AnimaError as exc:
            return [gr.skip(), *unchanged(show_error(exc)), hide]
        picker_update = gr.update(choices=agent_choices(services), value=None)
        return [picker_update, *show(None, f"Deleted **{name}**."), hide]

    def export(fmt: str, agent_id: str | None, card_spec: str) -> tuple[Any, str]:
        if not agent_id:
            return None, show_error(ValidationError("save the agent before exporting it"))
        try:
            card = services.agents.export_card(agent_id, fmt, card_spec)  # type: ignore[arg-type]
        except AnimaError as exc:
            return None, show_error(exc)
        path = _export_path(card.filename)
        path.write_bytes(card.content)
        return str(path), f"Exported **{card.filename}**."

    picker.input(load, inputs=[picker], outputs=[*detail, confirm_row])
    new_btn.click(new, outputs=[picker, *detail])
    avatar.upload(lambda: True, outputs=[avatar_changed])
    saved = save_btn.click(
        save, inputs=[picker, avatar, avatar_changed, *form], outputs=[picker, *detail]
    )
    delete_btn.click(ask_delete, inputs=[picker], outputs=[confirm_row, status])
    cancel_btn.click(lambda: (gr.update(visible=False), ""), outputs=[confirm_row, status])
    deleted = confirm_btn.click(delete, inputs=[picker], outputs=[picker, *detail, confirm_row])
    for fmt, btn in export_btns.items():
        btn.click(
            lambda agent_id, card_spec, fmt=fmt: export(fmt, agent_id, card_spec),
            inputs=[picker, spec],
            outputs=[export_file, status],
        )
    saved.then(chain_panel.refresh, inputs=[picker], outputs=chain_panel.outputs)
    return AgentsTab(picker=picker, list_changed=[saved, deleted])


def _export_path(filename: str) -> Path:
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
