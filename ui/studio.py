"""Anima studio: the Gradio UI, composed from a registry of screens.

The UI holds no business logic: every screen calls the same services the HTTP API calls. Each
screen lives in its own folder (``ui/<screen>/layout.py`` builds it, ``handlers.py`` acts) and
plugs in here with one ``Screen`` entry; what screens share (the services, the selected agent,
the "agents changed" signal that keeps every agent picker current, page-load hooks) travels in
the ``StudioContext``, so adding a screen needs no wiring anywhere else.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr

from container import Services
from ui.agents.guard import PAGE_SCRIPT
from ui.agents.layout import build_agents_screen
from ui.chat.layout import build_chat_screen
from ui.context import StudioContext
from ui.developer.layout import build_developer_screen
from ui.gallery.layout import build_gallery_screen
from ui.importer.layout import build_import_screen
from ui.jobs.layout import build_jobs_screen
from ui.models.layout import build_models_screen
from ui.wallet.layout import build_wallet_bar
from ui.wallet_screen.layout import build_wallet_screen

TITLE = "Anima studio"
# Gradio's own cache (uploads, exported files): clear entries older than a day, hourly.
CACHE_CLEANUP = (3600, 86400)
CSS_FILE = Path(__file__).with_name("studio.css")
# System fonts only: the studio runs offline, so nothing may be fetched from a font service.
FONTS = ["ui-sans-serif", "system-ui", "-apple-system", "Segoe UI", "Roboto", "sans-serif"]
MONO = ["ui-monospace", "SFMono-Regular", "Menlo", "Consolas", "monospace"]


def studio_theme() -> gr.themes.Base:
    """One theme for every screen: calm indigo accents, readable text, compact spacing."""
    return gr.themes.Soft(
        primary_hue="indigo",
        secondary_hue="violet",
        neutral_hue="slate",
        radius_size="md",
        spacing_size="md",
        text_size="md",
        font=FONTS,
        font_mono=MONO,
    ).set(
        body_text_color_subdued="*neutral_500",
        block_title_text_weight="600",
        block_label_text_weight="600",
        button_primary_text_color="white",
    )


def page_options() -> dict[str, Any]:
    """The page's look and page-wide script, for ``gr.mount_gradio_app`` (Gradio takes them
    at mount time, not in ``gr.Blocks``)."""
    return {
        "theme": studio_theme(),
        "css_paths": [CSS_FILE],
        "head": PAGE_SCRIPT
        + '<meta name="viewport" content="width=device-width, initial-scale=1">',
    }


@dataclass(frozen=True)
class Screen:
    """One tab of the studio: ``build(ctx)`` lays it out inside its ``gr.Tab``."""

    id: str
    title: str
    build: Callable[[StudioContext], Any]


# The tabs, in order. A new screen adds its folder under ui/ and one line here.
SCREENS: tuple[Screen, ...] = (
    Screen("gallery", "Gallery", build_gallery_screen),  # the landing tab
    Screen("agents", "Agents", build_agents_screen),
    Screen("chat", "Chat", build_chat_screen),
    Screen("import", "Import", build_import_screen),
    Screen("jobs", "Jobs", build_jobs_screen),
    Screen("developer", "Developer", build_developer_screen),
    Screen("models", "Models", build_models_screen),
    Screen("wallet", "Wallet", build_wallet_screen),
)


def build_ui(services: Services, screens: tuple[Screen, ...] = SCREENS) -> gr.Blocks:
    """The studio as a ``gr.Blocks``; ``app.py`` mounts it on the FastAPI app at ``/ui``."""
    with gr.Blocks(title=TITLE, analytics_enabled=False, delete_cache=CACHE_CLEANUP) as demo:
        ctx = StudioContext(services)
        gr.Markdown(f"## {TITLE}\nCreate role-play agents from character cards and chat.")
        build_wallet_bar(ctx)  # who is signed in: the owner of what they create
        # The tab strip scrolls sideways on a phone (studio.css).
        with gr.Tabs(overflow_behavior="wrap", elem_classes=["anima-tabs"]) as ctx.tabs:
            for screen in screens:
                with gr.Tab(screen.title, id=screen.id, elem_id=f"tab-{screen.id}"):
                    screen.build(ctx)
        ctx.run_after_build()
        ctx.attach_load_hooks(demo)
    return demo
