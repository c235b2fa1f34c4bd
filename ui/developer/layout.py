"""The Developer screen (layout): API keys with scopes and limits, and usage plots.

A key is shown once, when it is created, with a copy button; afterwards only its prefix. The
table shows each key's limits, its tokens this day or month and what is left. The plots show
requests, distinct users and tokens per day for the signed-in owner's agents (or everything
the owner may see).
"""

from __future__ import annotations

from typing import Any

import gradio as gr

from chain.api_keys import SCOPES
from ui.context import StudioContext
from ui.developer import handlers
from ui.developer.handlers import KEY_COLUMNS
from ui.wiring import runner, wire


def build_developer_screen(ctx: StudioContext) -> None:
    """Lay out the screen inside the caller's ``gr.Tab`` and wire its events."""
    c: dict[str, Any] = {"status": gr.Markdown(handlers.SIGN_IN, elem_id="dev-status")}
    _new_key_form(ctx, c)
    _key_table(c)
    _usage_plots(c)
    _wire_keys(ctx, c)
    _wire_plots(ctx, c)


def _new_key_form(ctx: StudioContext, c: dict[str, Any]) -> None:
    with gr.Accordion("New API key", open=True):
        with gr.Row():
            c["name"] = gr.Textbox(label="Name", max_length=100, elem_id="dev-name")
            c["scopes"] = gr.CheckboxGroup(
                list(SCOPES), value=list(SCOPES), label="Scopes", elem_id="dev-scopes"
            )
            c["agents"] = ctx.agent_picker(
                label="Only these agents (empty: all)", multiselect=True, elem_id="dev-agents"
            )
        with gr.Row():
            c["expires"] = gr.Number(label="Expires in days (0: never)", value=0, precision=0)
            c["rpm"] = gr.Number(label="Requests/min (0: no limit)", value=0, precision=0)
            c["tpm"] = gr.Number(label="Tokens/min (0: no limit)", value=0, precision=0)
            c["streams"] = gr.Number(label="Concurrent replies (0: no limit)", value=0, precision=0)
            c["budget"] = gr.Number(label="Token budget (0: none)", value=0, precision=0)
            c["period"] = gr.Radio(["day", "month"], value="month", label="Budget per")
        c["create"] = gr.Button("Create key", variant="primary", elem_id="dev-create")
        c["new_key"] = gr.Textbox(
            label="Your new key (shown once)",
            interactive=False,
            buttons=["copy"],
            elem_id="dev-new-key",
        )


def _key_table(c: dict[str, Any]) -> None:
    c["keys"] = gr.Dataframe(
        headers=KEY_COLUMNS, value=[], interactive=False, wrap=True, elem_id="dev-keys"
    )
    with gr.Row():
        c["picker"] = gr.Dropdown([], label="Key", elem_id="dev-key-picker", scale=2)
        c["revoke"] = gr.Button("Revoke", variant="stop", elem_id="dev-revoke", scale=0)
        c["refresh"] = gr.Button("Refresh", elem_id="dev-refresh", scale=0)


def _usage_plots(c: dict[str, Any]) -> None:
    gr.Markdown("### Usage per day")
    c["agent"] = gr.Dropdown([], label="Agent", elem_id="dev-usage-agent")
    with gr.Row():
        c["requests_plot"] = gr.LinePlot(x="day", y="requests", title="Requests", height=240)
        c["users_plot"] = gr.LinePlot(x="day", y="users", title="Distinct users", height=240)
        c["tokens_plot"] = gr.BarPlot(x="day", y="tokens", color="kind", title="Tokens", height=240)


def _named(c: dict[str, Any], *names: str) -> dict[str, Any]:
    """The screen's components ``names``, as a handler's named outputs."""
    return {name: c[name] for name in names}


def _wire_keys(ctx: StudioContext, c: dict[str, Any]) -> None:
    services = ctx.services
    key_outputs = _named(c, "keys", "picker", "status")
    form = ["name", "scopes", "agents", "expires", "rpm", "tpm", "streams", "budget", "period"]
    wire(
        c["create"].click,
        handlers.create,
        services,
        inputs=[c[name] for name in form],
        outputs={**key_outputs, "new_key": c["new_key"]},
        as_user=True,
    )
    wire(
        c["revoke"].click,
        handlers.revoke,
        services,
        inputs=[c["picker"]],
        outputs={**key_outputs, "new_key": c["new_key"]},
        as_user=True,
    )
    wire(c["refresh"].click, handlers.keys, services, outputs=key_outputs, as_user=True)
    # Keys are read afresh whenever a page opens.
    ctx.on_load(
        runner(handlers.keys, services, list(key_outputs), as_user=True),
        [],
        list(key_outputs.values()),
    )


def _wire_plots(ctx: StudioContext, c: dict[str, Any]) -> None:
    services = ctx.services
    agent = c["agent"]
    plot_outputs = _named(c, "requests_plot", "users_plot", "tokens_plot")
    for event in (c["refresh"].click, agent.change):
        wire(event, handlers.plots, services, inputs=[agent], outputs=plot_outputs, as_user=True)
    # Agents and plots are read afresh whenever a page opens.
    ctx.on_load(runner(handlers.owned_agents, services, ["agent"], as_user=True), [], [agent])
    ctx.on_load(
        runner(handlers.plots, services, list(plot_outputs), as_user=True),
        [agent],
        list(plot_outputs.values()),
    )
