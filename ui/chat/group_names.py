"""Who speaks in a chat bubble: a group chat's replies open with their speaker's name."""

from __future__ import annotations


def speaker_text(name: str | None, text: str) -> str:
    """``text`` as a bubble shows it: ``**Name:** text`` when a named character spoke."""
    return f"**{name}:** {text}" if name else text
