"""The lorebook panel's layout: search and the entries table, bulk enable/disable, the entry
editor, and world-info books (import, export, attach).

Components and wiring only (``handlers.py`` holds what each control does). The panel follows
the agent picked in the editor's ``picker``.
"""

from __future__ import annotations

from typing import Any

import gradio as gr

from ui.context import StudioContext
from ui.panels.lorebook import handlers
from ui.panels.lorebook.handlers import COLUMNS, EDITOR, HEADERS, LOGIC_CHOICES, POSITION_CHOICES
from ui.wiring import wire

Components = dict[str, Any]


def build_lorebook_panel(ctx: StudioContext, picker: gr.Dropdown) -> None:
    """Lay out the panel inside the caller's layout and wire its events."""
    c: Components = {}
    gr.Markdown(
        "Facts the model sees only when a key turns up in the recent chat. "
        "Keys are comma separated; write `/pattern/i` for a regular expression.",
        elem_id="lore-intro",
    )
    _table(c)
    _editor(c)
    _books(c)
    _wire(ctx, picker, c)


def _table(c: Components) -> None:
    with gr.Row():
        c["query"] = gr.Textbox(
            label="Search",
            placeholder="Keys, comment or content",
            elem_id="lore-search",
            scale=4,
            min_width=220,
        )
        c["add"] = gr.Button(
            "Add entry", variant="primary", elem_id="lore-add", scale=1, min_width=120
        )
    c["count"] = gr.Markdown("", elem_id="lore-count")
    c["table"] = gr.Dataframe(
        headers=HEADERS,
        value=[],
        interactive=False,
        wrap=True,
        max_height=420,
        column_widths=[f"{width}px" for _, width in COLUMNS],
        pinned_columns=1,
        elem_id="lore-table",
    )
    with gr.Row(equal_height=True):
        c["bulk"] = gr.Dropdown(
            choices=[],
            value=[],
            multiselect=True,
            label="Select entries",
            info="For enable, disable or delete many at once.",
            elem_id="lore-bulk",
            scale=4,
            min_width=200,
        )
        with gr.Column(scale=1, min_width=140):
            c["enable"] = gr.Button("Enable", size="sm", elem_id="lore-enable")
            c["disable"] = gr.Button("Disable", size="sm", elem_id="lore-disable")
            c["delete_many"] = gr.Button(
                "Delete selected", size="sm", variant="stop", elem_id="lore-delete-many"
            )


def _editor(c: Components) -> None:
    """The selected entry, every field; wraps to one column on a phone."""
    with gr.Row():
        c["index"] = gr.Number(
            label="Entry #",
            value=None,
            precision=0,
            interactive=False,
            elem_id="lore-index",
            min_width=90,
            scale=1,
        )
        c["comment"] = gr.Textbox(
            label="Comment (title)", elem_id="lore-comment", scale=4, min_width=200
        )
    with gr.Row():
        c["keys"] = gr.Textbox(
            label="Keys", placeholder="dragon, /wyrms?/i", elem_id="lore-keys", min_width=240
        )
        c["secondary_keys"] = gr.Textbox(
            label="Secondary keys",
            placeholder="Optional; see Logic",
            elem_id="lore-secondary-keys",
            min_width=240,
        )
    c["content"] = gr.Textbox(label="Content", lines=5, max_lines=20, elem_id="lore-content")
    with gr.Row():
        c["enabled"] = gr.Checkbox(
            label="Enabled", value=True, elem_id="lore-enabled", min_width=150
        )
        c["constant"] = gr.Checkbox(label="Always on", elem_id="lore-constant", min_width=150)
        c["use_regex"] = gr.Checkbox(label="Regex keys", elem_id="lore-regex", min_width=150)
    with gr.Row():
        c["selective_logic"] = gr.Dropdown(
            LOGIC_CHOICES,
            value=0,
            label="Logic (secondary keys)",
            elem_id="lore-logic",
            min_width=150,
        )
        c["position"] = gr.Dropdown(
            POSITION_CHOICES,
            value="before_char",
            label="Position",
            elem_id="lore-position",
            min_width=150,
        )
    with gr.Row():
        c["order"] = gr.Number(
            label="Order", value=100, precision=0, elem_id="lore-order", min_width=100
        )
        c["depth"] = gr.Number(
            label="Depth", value=None, precision=0, elem_id="lore-depth", min_width=100
        )
        c["probability"] = gr.Slider(
            0,
            100,
            value=100,
            step=1,
            label="Probability %",
            elem_id="lore-probability",
            min_width=200,
            scale=2,
        )
    with gr.Row():
        c["save"] = gr.Button("Save entry", variant="primary", elem_id="lore-save", min_width=110)
        c["duplicate"] = gr.Button("Duplicate", elem_id="lore-duplicate", min_width=110)
        c["delete"] = gr.Button(
            "Delete entry", variant="stop", elem_id="lore-delete", min_width=110
        )
    c["status"] = gr.Markdown("", elem_id="lore-status")


def _books(c: Components) -> None:
    with gr.Accordion("World-info books (SillyTavern)", open=False, elem_id="lore-books"):
        c["attached_note"] = gr.Markdown("", elem_id="lore-attached-note")
        with gr.Row(equal_height=True):
            c["upload"] = gr.File(
                label="Import a world-info .json (attached to this agent)",
                file_types=[".json"],
                type="filepath",
                height=140,
                elem_id="lore-import",
                min_width=200,
            )
            with gr.Column(min_width=200):
                c["export"] = gr.Button("Export this card's entries", elem_id="lore-export")
                c["book_file"] = gr.File(
                    label="Download",
                    interactive=False,
                    visible=False,
                    height=80,
                    elem_id="lore-export-file",
                )
        with gr.Row(equal_height=True):
            c["book"] = gr.Dropdown(
                choices=[], value=None, label="Your books", elem_id="lore-book", min_width=200
            )
            c["attach"] = gr.Button("Attach", elem_id="lore-attach", min_width=100)
        with gr.Row(equal_height=True):
            c["attached"] = gr.Dropdown(
                choices=[],
                value=None,
                label="Attached books",
                elem_id="lore-attached",
                min_width=200,
            )
            c["detach"] = gr.Button("Detach", elem_id="lore-detach", min_width=100)
        c["book_status"] = gr.Markdown("", elem_id="lore-book-status")


def _row_index(table: Any, evt: gr.SelectData) -> Any:
    """The entry number (first column) of the clicked row."""
    row = evt.index[0] if isinstance(evt.index, list | tuple) else evt.index
    try:
        values = table.values.tolist() if hasattr(table, "values") else table
        return int(values[row][0])
    except (IndexError, TypeError, ValueError):
        return gr.skip()


def _wire(ctx: StudioContext, picker: gr.Dropdown, c: Components) -> None:
    services = ctx.services
    editor = {name: c[name] for name in EDITOR}
    table = {"table": c["table"], "bulk": c["bulk"], "count": c["count"]}
    status = {"status": c["status"]}
    books = {
        "book": c["book"],
        "attached": c["attached"],
        "attached_note": c["attached_note"],
        "book_status": c["book_status"],
    }
    agent_query = [picker, c["query"]]
    wire(
        picker.change,
        handlers.load,
        services,
        inputs=agent_query,
        outputs={**table, **editor, **status, **books},
    )
    wire(
        c["query"].change,
        handlers.search,
        services,
        inputs=agent_query,
        outputs={**table, **status},
        trigger_mode="always_last",
    )
    picked = c["table"].select(_row_index, inputs=[c["table"]], outputs=[c["index"]])
    wire(
        picked.then,
        handlers.open_entry,
        services,
        inputs=[picker, c["index"]],
        outputs={**editor, **status},
    )
    changes = {**table, **editor, **status}
    wire(c["add"].click, handlers.add_entry, services, inputs=agent_query, outputs=changes)
    wire(
        c["save"].click,
        handlers.save_entry,
        services,
        inputs=[*agent_query, *editor.values()],
        outputs={**table, **status},
    )
    for name, fn in (("duplicate", handlers.duplicate_entry), ("delete", handlers.delete_entry)):
        wire(c[name].click, fn, services, inputs=[*agent_query, c["index"]], outputs=changes)
    for name, flag in (("enable", True), ("disable", False)):
        wire(
            c[name].click,
            lambda services, agent_id, query, indexes, flag=flag, *, principal: (
                handlers.set_enabled(services, agent_id, query, indexes, flag, principal=principal)
            ),
            services,
            inputs=[*agent_query, c["bulk"]],
            outputs={**table, **status},
        )
    wire(
        c["delete_many"].click,
        handlers.delete_many,
        services,
        inputs=[*agent_query, c["bulk"]],
        outputs=changes,
    )
    wire(
        c["export"].click,
        handlers.export_world_info,
        services,
        inputs=[picker],
        outputs={"book_file": c["book_file"], "book_status": c["book_status"]},
    )
    wire(
        c["upload"].upload,
        handlers.import_world_info,
        services,
        inputs=[picker, c["upload"]],
        outputs=books,
    )
    wire(c["attach"].click, handlers.attach, services, inputs=[picker, c["book"]], outputs=books)
    wire(
        c["detach"].click,
        handlers.detach,
        services,
        inputs=[picker, c["attached"]],
        outputs=books,
    )
