"""The agent editor's events: which handler runs on which control, and the browser-side
unsaved-change guard around loading, New and Save (``guard.py``)."""

from __future__ import annotations

from typing import Any

import gradio as gr
from gradio.events import Dependency

from container import Services
from core.principal import Principal
from ui.agents import handlers
from ui.agents.form import FORM_KEYS
from ui.agents.guard import MARK_CLEAN, MARK_DIRTY, confirm_switch
from ui.agents.side import EXPORT_FORMATS
from ui.context import StudioContext
from ui.wiring import Updates, wire

Components = dict[str, Any]


def _save(
    services: Services,
    agent_id: str | None,
    path: str | None,
    changed: bool,
    *raw: Any,
    principal: Principal,
) -> Updates:
    """``handlers.save`` with the form's positional values turned into a dict by key."""
    values = dict(zip(FORM_KEYS, raw, strict=True))
    return handlers.save(services, agent_id, path, changed, values, principal=principal)


def wire_editor(ctx: StudioContext, c: Components) -> tuple[Dependency, Dependency]:
    """Wire the editor; returns the save and the delete events (they change the agent list)."""
    services = ctx.services
    c["shown"] = gr.State(None)  # the agent the form shows: a cancelled switch returns to it
    c["intent"] = gr.Textbox("", visible="hidden", elem_id="agent-switch-intent")  # guard.py
    detail = {name: c[name] for name in handlers.DETAIL}
    picked = {"picker": c["picker"], **detail}
    _guard(c)
    loaded = wire(
        ctx.picked(c["picker"], "agents"),  # a pick, or another screen opening an agent
        handlers.load,
        services,
        inputs=[c["picker"], c["shown"], c["intent"]],
        outputs={**picked, "confirm_row": c["confirm_row"]},
        js=confirm_switch(3),
    )
    fresh = wire(
        c["new"].click,
        handlers.new,
        services,
        inputs=[c["intent"]],
        outputs=picked,
        js=confirm_switch(1),
    )
    c["avatar"].upload(lambda: True, outputs=[c["avatar_changed"]])
    saved = wire(
        c["save"].click,
        _save,
        services,
        inputs=[c["picker"], c["avatar"], c["avatar_changed"], *[c[k] for k in FORM_KEYS]],
        outputs=picked,
        as_user=True,
    )
    for event in (loaded, fresh, saved):
        event.then(None, inputs=[c["status"]], js=MARK_CLEAN)
        event.then(lambda agent_id: agent_id, inputs=[c["picker"]], outputs=[c["shown"]])
    deleted = _wire_delete_and_export(ctx, c, picked)
    # Saving changes the card, hence its hash: the on-chain section says whether it matches.
    c["chain"].follow(saved, c["picker"])
    ctx.announce_agents_changed([saved, deleted])
    return saved, deleted


def _guard(c: Components) -> None:
    """Edits the page's input listener cannot see (picks, sliders, a new avatar) mark dirty."""
    triggers = [c[k].input for k in FORM_KEYS if k != "alternate_greetings"]
    triggers += [c["avatar"].upload, c["avatar"].clear]
    gr.on(triggers=triggers, fn=None, js=MARK_DIRTY)


def _wire_delete_and_export(ctx: StudioContext, c: Components, picked: dict) -> Dependency:
    services = ctx.services
    status_row = {"confirm_row": c["confirm_row"], "status": c["status"]}
    wire(c["delete"].click, handlers.ask_delete, services, inputs=[c["picker"]], outputs=status_row)
    wire(c["cancel"].click, handlers.cancel_delete, services, outputs=status_row)
    deleted = wire(
        c["confirm"].click,
        handlers.delete,
        services,
        inputs=[c["picker"]],
        outputs={**picked, "confirm_row": c["confirm_row"]},
        as_user=True,
    )
    deleted.then(None, inputs=[c["status"]], js=MARK_CLEAN)
    for fmt in EXPORT_FORMATS:
        wire(
            c[f"export_{fmt}"].click,
            lambda services, agent_id, spec, fmt=fmt: handlers.export(
                services, fmt, agent_id, spec
            ),
            services,
            inputs=[c["picker"], c["spec"]],
            outputs={"export_file": c["export_file"], "status": c["status"]},
        )
    return deleted
