"""What every screen of the studio shares: the services, the agent being edited, and one
"the list of agents changed" signal.

A screen that creates, imports or deletes agents announces it (``announce_agents_changed``);
every agent dropdown made with ``agent_picker`` follows that signal by itself. So a new screen
with an agent picker needs no wiring in ``studio.py``, and no screen keeps a list of the
others' pickers. ``on_load`` collects what each screen wants to run when a page opens; the
studio attaches those hooks to the page's load event once all screens are built.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import gradio as gr
from gradio.events import Dependency

from container import Services
from core.principal import ANONYMOUS
from ui.common import agent_choices, keep_choice, principal_of


@dataclass
class LoadHook:
    fn: Callable[..., Any]
    inputs: list[Any]
    outputs: list[Any]


@dataclass
class StudioContext:
    """Create inside the studio's ``gr.Blocks`` (it holds ``gr.State`` components)."""

    services: Services
    # The id of the agent picked in the editor (None: a new, unsaved agent). The editor's
    # panels (knowledge, voice, fine-tune, chain) follow it.
    selected_agent: gr.State = field(default_factory=lambda: gr.State(None))
    # A counter bumped after anything that may add, rename or remove agents.
    agents_changed: gr.State = field(default_factory=lambda: gr.State(0))
    load_hooks: list[LoadHook] = field(default_factory=list)
    # The studio's tabs (set by ``studio.py``), so a screen can switch to another one.
    tabs: gr.Tabs | None = None
    # Screens that show an agent when another screen asks (the gallery's "Chat" and "Edit"),
    # by screen id: the screen's agent picker and a counter the asking screen bumps.
    openers: dict[str, tuple[gr.Dropdown, gr.State]] = field(default_factory=dict)
    # Wiring that needs components of screens built later (run by ``run_after_build``).
    after_build: list[Callable[[], None]] = field(default_factory=list)

    def agent_picker(self, **options: Any) -> gr.Dropdown:
        """An agent dropdown that refreshes its choices whenever the agents change."""
        # Built once for every browser: only public agents. Each page load refreshes the
        # choices for its own caller (their private agents too).
        picker = gr.Dropdown(choices=agent_choices(self.services, ANONYMOUS), value=None, **options)

        def refresh(current: Any, request: gr.Request) -> Any:
            # Only the choices, unless the picked agent is gone: a refresh that was asked for
            # before an event picked a new agent must not undo that pick when it lands late.
            choices = agent_choices(self.services, principal_of(self.services, request))
            if current is not None and keep_choice(current, choices) is None:
                return gr.update(choices=choices, value=None)
            return gr.update(choices=choices)

        self.agents_changed.change(refresh, inputs=[picker], outputs=[picker])
        return picker

    def picked(self, picker: gr.Dropdown, screen: str) -> list[Any]:
        """The triggers on which ``screen`` shows the agent in ``picker``: the user picking
        one, or another screen opening one there (it sets ``picker`` and bumps the counter)."""
        asked = gr.State(0)
        self.openers[screen] = (picker, asked)
        return [picker.input, asked.change]

    def run_after_build(self) -> None:
        """Run the wiring screens deferred until every screen was built."""
        for wire_up in self.after_build:
            wire_up()

    def announce_agents_changed(self, events: Sequence[Dependency]) -> None:
        """After each of ``events``, tell every agent picker to refresh."""
        for event in events:
            event.then(_bump, inputs=[self.agents_changed], outputs=[self.agents_changed])

    def on_load(
        self, fn: Callable[..., Any], inputs: Sequence[Any] = (), outputs: Sequence[Any] = ()
    ) -> None:
        """Run ``fn`` when a page opens (state baked in at build time goes stale)."""
        self.load_hooks.append(LoadHook(fn, list(inputs), list(outputs)))

    def attach_load_hooks(self, demo: gr.Blocks) -> None:
        # Choices baked in at build time go stale: every page load asks the services afresh.
        demo.load(_bump, inputs=[self.agents_changed], outputs=[self.agents_changed])
        for hook in self.load_hooks:
            demo.load(hook.fn, inputs=hook.inputs, outputs=hook.outputs)


def _bump(count: int | None) -> int:
    return (count or 0) + 1
