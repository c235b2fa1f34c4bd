"""The Models screen (layout): the default model, how to get a real one, forms to add a local
model or a server (each with Test), the connections with their models, and the agent editor's
model picker (``build_agent_model_panel``).

Only components and wiring live here; what each button does is in ``handlers.py``.
"""

from __future__ import annotations

from typing import Any

import gradio as gr

from ui.context import StudioContext
from ui.models import handlers
from ui.models.handlers import CONNECTION_COLUMNS
from ui.wiring import runner, wire

REFRESHED = ("summary", "how_to", "table", "default", "picked", "empty")


def build_models_screen(ctx: StudioContext) -> None:
    """Lay out the screen inside the caller's ``gr.Tab`` and wire its events."""
    c: dict[str, Any] = {}
    c["summary"] = gr.Markdown("", elem_id="models-summary")
    with gr.Accordion("How to get a real model", open=True):
        c["how_to"] = gr.Markdown("", elem_id="models-how-to")
    with gr.Row():
        c["default"] = gr.Dropdown(
            [], label="Default model", elem_id="models-default", scale=4, min_width=200
        )
    with gr.Row():
        c["set_default"] = gr.Button(
            "Make default", variant="primary", elem_id="models-set-default", size="md"
        )
        c["load"] = gr.Button("Load now", elem_id="models-load", size="md")
    c["status"] = gr.Markdown("", elem_id="models-status")
    _local_form(c)
    _server_form(c)
    gr.Markdown("### Connections")
    c["empty"] = gr.Markdown(
        "No connections yet: add a local model or a server above.", elem_id="models-empty"
    )
    c["table"] = gr.Dataframe(
        headers=CONNECTION_COLUMNS, value=[], interactive=False, wrap=True, elem_id="models-table"
    )
    c["picked"] = gr.Dropdown([], label="Connection", elem_id="models-picked")
    with gr.Row():
        c["retest"] = gr.Button("Test again", elem_id="models-retest", size="md")
        c["delete"] = gr.Button("Delete", variant="stop", elem_id="models-delete", size="md")
    _wire(ctx, c)


def _local_form(c: dict[str, Any]) -> None:
    with gr.Accordion("Add a model file on this machine (GGUF or model folder)", open=True):
        with gr.Row():
            c["local_name"] = gr.Textbox(
                label="Name", placeholder="qwen7b", max_length=64, elem_id="models-local-name"
            )
            c["local_path"] = gr.Textbox(
                label="File or folder",
                placeholder="Qwen2.5-7B-Instruct-Q4_K_M.gguf",
                info="A name inside the models folder, or an absolute path in ANIMA_MODEL_DIRS.",
                max_length=1000,
                elem_id="models-local-path",
                scale=2,
            )
        with gr.Row():
            c["local_test"] = gr.Button("Test", elem_id="models-local-test")
            c["local_add"] = gr.Button("Add", variant="primary", elem_id="models-local-add")
        c["local_status"] = gr.Markdown("", elem_id="models-local-status")


def _server_form(c: dict[str, Any]) -> None:
    with gr.Accordion("Add an OpenAI-compatible server", open=True):
        with gr.Row():
            c["server_name"] = gr.Textbox(
                label="Name", placeholder="ollama", max_length=64, elem_id="models-server-name"
            )
            c["server_url"] = gr.Textbox(
                label="Base URL",
                placeholder="http://127.0.0.1:11434/v1",
                max_length=1000,
                elem_id="models-server-url",
                scale=2,
            )
            c["server_key"] = gr.Textbox(
                label="API key (if it needs one)",
                type="password",
                max_length=1000,
                elem_id="models-server-key",
            )
        with gr.Row():
            c["server_test"] = gr.Button("Test", elem_id="models-server-test")
            c["server_add"] = gr.Button("Add", variant="primary", elem_id="models-server-add")
        c["server_status"] = gr.Markdown("", elem_id="models-server-status")


def _named(c: dict[str, Any], *names: str) -> dict[str, Any]:
    return {name: c[name] for name in names}


def _wire(ctx: StudioContext, c: dict[str, Any]) -> None:
    services = ctx.services
    refreshed = _named(c, *REFRESHED)
    local = [c["local_name"], c["local_path"]]
    server = [c["server_name"], c["server_url"], c["server_key"]]
    for button, fn, inputs, status in (
        ("local_test", handlers.test_local, local, "local_status"),
        ("server_test", handlers.test_server, server, "server_status"),
    ):
        wire(c[button].click, fn, services, inputs=inputs, outputs=_named(c, status), progress=True)
    wire(
        c["local_add"].click,
        handlers.add_local,
        services,
        inputs=local,
        outputs={**refreshed, **_named(c, "local_status")},
        progress=True,
    )
    wire(
        c["server_add"].click,
        handlers.add_server,
        services,
        inputs=server,
        outputs={**refreshed, **_named(c, "server_status", "server_key")},
        progress=True,
    )
    with_status = {**refreshed, "status": c["status"]}
    wire(c["retest"].click, handlers.retest, services, inputs=[c["picked"]], outputs=with_status)
    wire(c["delete"].click, handlers.delete, services, inputs=[c["picked"]], outputs=with_status)
    wire(
        c["set_default"].click,
        handlers.set_default,
        services,
        inputs=[c["default"]],
        outputs=with_status,
    )
    wire(
        c["load"].click,
        handlers.load,
        services,
        inputs=[c["default"]],
        outputs={"status": c["status"]},
        progress=True,
    )
    # Connections are read afresh whenever a page opens.
    ctx.on_load(
        runner(handlers.refresh, services, list(refreshed), as_user=True),
        [],
        list(refreshed.values()),
    )


def build_agent_model_panel(ctx: StudioContext, picker: gr.Dropdown) -> gr.Dropdown:
    """The model of the agent picked in ``picker``: any model of the connections, or the
    default. Picking one saves it at once (the rest of the form is saved with Save)."""
    services = ctx.services
    model = gr.Dropdown(
        handlers.agent_model_choices(services),
        value=handlers.SETTINGS_DEFAULT,
        label="Model",
        info="Saved when picked. Add models on the Models screen.",
        interactive=False,
        elem_id="agent-model",
    )
    status = gr.Markdown("", elem_id="agent-model-status")
    outputs = {"agent_model": model, "agent_model_status": status}
    wire(
        picker.change,
        handlers.load_agent_model,
        services,
        inputs=[picker],
        outputs=outputs,
        as_user=True,
    )
    wire(
        model.input,
        handlers.save_agent_model,
        services,
        inputs=[picker, model],
        outputs={"agent_model_status": status},
        as_user=True,
    )
    return model
