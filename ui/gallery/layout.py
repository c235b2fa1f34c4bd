"""The gallery's layout: search and filters, the grid of agent cards, paging and import.

The grid is one ``gr.HTML`` built by ``ui.gallery.cards`` (every user string escaped); its
script turns clicks on a card into the component's ``click`` event and hands a card file
dropped anywhere on the gallery to the Import button. "Chat" and "Edit" open the agent on the
Chat and Agents tabs through the ``StudioContext`` (``ctx.picked``): those screens are built
after this one, so that wiring waits for ``ctx.after_build``.
"""

from __future__ import annotations

from typing import Any

import gradio as gr

from ui.context import StudioContext
from ui.gallery import handlers
from ui.gallery.cards import CSS, GRID_JS
from ui.importer.layout import CARD_FILE_TYPES
from ui.wiring import wire


def build_gallery_screen(ctx: StudioContext) -> None:
    """Lay out the gallery inside the caller's ``gr.Tab`` and wire its events."""
    c: dict[str, Any] = {}
    with gr.Column(elem_id="gallery"):
        gr.HTML(f"<style>{CSS}</style>", elem_id="gallery-style", visible="hidden")
        # Each control in its own column: Gradio would otherwise stack neighbouring form
        # controls into one box.
        with gr.Row(elem_id="gallery-bar", equal_height=True):
            with gr.Column(scale=4, min_width=220):
                c["q"] = gr.Textbox(
                    label="Search",
                    show_label=False,
                    placeholder="Search names and tags",
                    elem_id="gallery-search",
                    max_length=200,
                    container=False,
                )
            with gr.Column(scale=0, min_width=140):
                c["new"] = gr.Button("New agent", variant="primary", elem_id="gallery-new")
            with gr.Column(scale=0, min_width=140):
                c["import"] = gr.UploadButton(
                    "Import card",
                    file_types=CARD_FILE_TYPES,
                    file_count="single",
                    type="filepath",
                    elem_id="gallery-import",
                )
        with gr.Row(elem_id="gallery-filters", equal_height=True):
            with gr.Column(scale=0, min_width=250):
                c["scope"] = gr.Radio(
                    list(handlers.SCOPES),
                    label="Whose agents",
                    value=handlers.ALL,
                    show_label=False,
                    container=False,
                    elem_id="gallery-scope",
                )
            with gr.Column(scale=1, min_width=180):
                c["tag"] = gr.Dropdown(
                    choices=[("All tags", handlers.ANY_TAG)],
                    value=handlers.ANY_TAG,
                    label="Tag",
                    show_label=False,
                    allow_custom_value=True,
                    container=False,
                    elem_id="gallery-tag",
                )
            with gr.Column(scale=0, min_width=360):
                c["sort"] = gr.Radio(
                    handlers.SORT_CHOICES,
                    value="recent",
                    label="Sort by",
                    show_label=False,
                    container=False,
                    elem_id="gallery-sort",
                )
        c["status"] = gr.Markdown("", elem_id="gallery-status")
        c["grid"] = gr.HTML(
            '<div class="gallery-empty">Loading the agents…</div>',
            js_on_load=GRID_JS,
            apply_default_css=False,
            elem_id="gallery-grid",
        )
        with gr.Row(elem_id="gallery-pager"):
            c["prev"] = gr.Button(
                "◀ Previous", size="sm", interactive=False, elem_id="gallery-prev"
            )
            c["pager"] = gr.Markdown("", elem_id="gallery-page")
            c["next"] = gr.Button("Next ▶", size="sm", interactive=False, elem_id="gallery-next")
    c["offset"] = gr.State(0)
    c["action"] = gr.State("")  # what the last click on a card asked: chat, edit or tag
    c["agent"] = gr.State("")
    c["clicked_tag"] = gr.State("")
    _wire(ctx, c)


def _card_click(evt: gr.EventData) -> tuple[str, str, str]:
    data = getattr(evt, "_data", None) or {}
    return str(data.get("action") or ""), str(data.get("agent") or ""), str(data.get("tag") or "")


def _wire(ctx: StudioContext, c: dict[str, Any]) -> None:
    services = ctx.services
    filters = [c["q"], c["scope"], c["tag"], c["sort"]]
    page = {name: c[name] for name in ("grid", "pager", "prev", "next", "offset", "status")}
    # Any change elsewhere (and every page load) redraws the page the browser is on.
    wire(
        ctx.agents_changed.change,
        handlers.show,
        services,
        inputs=[*filters, c["offset"]],
        outputs=page,
    )
    wire(
        ctx.agents_changed.change,
        handlers.tag_choices,
        services,
        inputs=[c["tag"]],
        outputs={"tag": c["tag"]},
    )
    wire(
        [c["q"].change, c["q"].submit, c["scope"].change, c["tag"].change, c["sort"].change],
        handlers.search,
        services,
        inputs=filters,
        outputs=page,
        trigger_mode="always_last",
    )
    wire(
        c["next"].click, handlers.next_page, services, inputs=[*filters, c["offset"]], outputs=page
    )
    wire(
        c["prev"].click, handlers.prev_page, services, inputs=[*filters, c["offset"]], outputs=page
    )
    imported = wire(
        c["import"].upload,
        handlers.import_card,
        services,
        inputs=[c["import"]],
        outputs={"status": c["status"]},
        show_progress="full",
    )
    ctx.announce_agents_changed([imported])
    clicked = c["grid"].click(
        _card_click, outputs=[c["action"], c["agent"], c["clicked_tag"]], queue=False
    )
    ctx.after_build.append(lambda: _wire_opening(ctx, c, clicked))


def _wire_opening(ctx: StudioContext, c: dict[str, Any], clicked: Any) -> None:
    """Chat / Edit / New agent switch tabs and pick the agent there (screens built later)."""
    services = ctx.services
    out: dict[str, Any] = {
        "tabs": ctx.tabs,
        "tag": c["tag"],
        "offset": c["offset"],
        "status": c["status"],
    }
    for screen in ("chat", "agents"):
        # A studio built without that screen: updates go to a state nobody reads.
        picker, counter = ctx.openers.get(screen) or (gr.State(None), gr.State(0))
        out[f"{screen}_picker"], out[f"{screen}_asked"] = picker, counter
    wire(
        clicked.then,
        handlers.open_card,
        services,
        inputs=[c["action"], c["agent"], c["clicked_tag"], out["chat_asked"], out["agents_asked"]],
        outputs=out,
    )
    wire(
        c["new"].click,
        handlers.new_agent,
        services,
        inputs=[out["agents_asked"]],
        outputs={k: out[k] for k in ("tabs", "agents_picker", "agents_asked")},
    )
