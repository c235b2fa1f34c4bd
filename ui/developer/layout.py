"""The Developer screen (layout): API keys with scopes and limits, and usage plots.

A key is shown once, when it is created, with a copy button; afterwards only its prefix. The
table shows each key's limits, its tokens this day or month and what is left. The plots show
requests, distinct users and tokens per day for the signed-in owner's agents (or everything
the owner may see).
"""

from __future__ import annotations

import gradio as gr

from chain.api_keys import SCOPES
from ui.context import StudioContext
from ui.developer import handlers
from ui.developer.handlers import KEY_COLUMNS
from ui.wiring import runner, wire


def build_developer_screen(ctx: StudioContext) -> None:
    """Lay out the screen inside the caller's ``gr.Tab`` and wire its events."""
    services = ctx.services
    status = gr.Markdown(handlers.SIGN_IN, elem_id="dev-status")
    with gr.Accordion("New API key", open=True):
        with gr.Row():
            name = gr.Textbox(label="Name", max_length=100, elem_id="dev-name")
            scopes = gr.CheckboxGroup(
                list(SCOPES), value=list(SCOPES), label="Scopes", elem_id="dev-scopes"
            )
            agents = ctx.agent_picker(
                label="Only these agents (empty: all)", multiselect=True, elem_id="dev-agents"
            )
        with gr.Row():
            expires = gr.Number(label="Expires in days (0: never)", value=0, precision=0)
            rpm = gr.Number(label="Requests/min (0: no limit)", value=0, precision=0)
            tpm = gr.Number(label="Tokens/min (0: no limit)", value=0, precision=0)
            streams = gr.Number(label="Concurrent replies (0: no limit)", value=0, precision=0)
            budget = gr.Number(label="Token budget (0: none)", value=0, precision=0)
            period = gr.Radio(["day", "month"], value="month", label="Budget per")
        create = gr.Button("Create key", variant="primary", elem_id="dev-create")
        new_key = gr.Textbox(
            label="Your new key (shown once)",
            interactive=False,
            buttons=["copy"],
            elem_id="dev-new-key",
        )
    table = gr.Dataframe(
        headers=KEY_COLUMNS, value=[], interactive=False, wrap=True, elem_id="dev-keys"
    )
    with gr.Row():
        picker = gr.Dropdown([], label="Key", elem_id="dev-key-picker", scale=2)
        revoke = gr.Button("Revoke", variant="stop", elem_id="dev-revoke", scale=0)
        refresh = gr.Button("Refresh", elem_id="dev-refresh", scale=0)

    gr.Markdown("### Usage per day")
    agent = gr.Dropdown([], label="Agent", elem_id="dev-usage-agent")
    with gr.Row():
        requests_plot = gr.LinePlot(x="day", y="requests", title="Requests", height=240)
        users_plot = gr.LinePlot(x="day", y="users", title="Distinct users", height=240)
        tokens_plot = gr.BarPlot(x="day", y="tokens", color="kind", title="Tokens", height=240)

    key_outputs = {"keys": table, "picker": picker, "status": status}
    plot_outputs = {
        "requests_plot": requests_plot,
        "users_plot": users_plot,
        "tokens_plot": tokens_plot,
    }
    wire(
        create.click,
        handlers.create,
        services,
        inputs=[name, scopes, agents, expires, rpm, tpm, streams, budget, period],
        outputs={**key_outputs, "new_key": new_key},
        as_user=True,
    )
    wire(
        revoke.click,
        handlers.revoke,
        services,
        inputs=[picker],
        outputs={**key_outputs, "new_key": new_key},
        as_user=True,
    )
    for event in (refresh.click, agent.change):
        wire(event, handlers.plots, services, inputs=[agent], outputs=plot_outputs, as_user=True)
    wire(refresh.click, handlers.keys, services, outputs=key_outputs, as_user=True)
    # Keys, agents and plots are read afresh whenever a page opens.
    ctx.on_load(
        runner(handlers.keys, services, list(key_outputs), as_user=True),
        [],
        list(key_outputs.values()),
    )
    ctx.on_load(runner(handlers.owned_agents, services, ["agent"], as_user=True), [], [agent])
    ctx.on_load(
        runner(handlers.plots, services, list(plot_outputs), as_user=True),
        [agent],
        list(plot_outputs.values()),
    )
