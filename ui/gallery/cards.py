"""The gallery's grid as HTML: one card per agent, built here so the page stays one request.

Every string that comes from a card or a user goes through ``html.escape`` (names, tags,
creators and descriptions are anyone's text). Avatars are loaded by the browser from the
agent avatar route, which applies the same visibility rules as the list. The buttons carry
``data-action`` and ``data-agent``; the grid's script (``GRID_JS``) turns a click on one
into the component's ``click`` event with those values.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

from agents.prompt import render_macros
from agents.views import AgentView

DESCRIPTION_CHARS = 160
TAGS_SHOWN = 4


@dataclass(frozen=True)
class Badge:
    key: str  # a CSS class suffix and a stable name for tests
    label: str
    title: str  # the tooltip that says what it means


def short_address(address: str | None) -> str:
    return f"{address[:6]}…{address[-4:]}" if address else ""


def summary(agent: AgentView) -> str:
    """One or two sentences for the card: the creator's notes if any, else the description,
    with ``{{char}}`` and ``{{user}}`` read as a reader would."""
    data = agent.data
    text = str(data.get("creator_notes") or data.get("description") or "")
    text = " ".join(render_macros(text, agent.name, "you").split())
    if len(text) > DESCRIPTION_CHARS:
        text = text[: DESCRIPTION_CHARS - 1].rsplit(" ", 1)[0] + "…"
    return text


def creator(agent: AgentView) -> str:
    return str(agent.data.get("creator") or "").strip() or short_address(agent.owner_address)


def _avatar(agent: AgentView) -> str:
    if agent.has_avatar:
        src = f"/api/agents/{escape(agent.id)}/avatar?v={agent.version}"
        return f'<img class="gallery-avatar" src="{src}" alt="" loading="lazy">'
    # No picture: the initial on a colour that stays the same for this agent.
    hue = int(hashlib.sha256(agent.id.encode()).hexdigest()[:4], 16) % 360
    initial = escape(agent.name.strip()[:1].upper() or "?")
    return (
        f'<div class="gallery-avatar gallery-initial" style="--hue: {hue}" aria-hidden="true">'
        f"{initial}</div>"
    )


def card_html(agent: AgentView, badges: Sequence[Badge]) -> str:
    agent_id = escape(agent.id)
    name = escape(agent.name)
    tags = [str(t) for t in agent.data.get("tags") or [] if str(t).strip()]
    chips = "".join(
        f'<button type="button" class="gallery-tag" data-action="tag" data-tag="{escape(t)}" '
        f'title="Show agents tagged {escape(t)}">{escape(t)}</button>'
        for t in tags[:TAGS_SHOWN]
    )
    if len(tags) > TAGS_SHOWN:
        chips += f'<span class="gallery-more">+{len(tags) - TAGS_SHOWN}</span>'
    marks = "".join(
        f'<span class="gallery-badge gallery-badge-{b.key}" title="{escape(b.title)}">'
        f"{escape(b.label)}</span>"
        for b in badges
    )
    by = creator(agent)
    return (
        f'<article class="gallery-card" data-agent="{agent_id}">'
        f'<button type="button" class="gallery-open" data-action="chat" data-agent="{agent_id}" '
        f'aria-label="Chat with {name}">{_avatar(agent)}</button>'
        '<div class="gallery-body">'
        f'<h3 class="gallery-name" title="{name}">{name}</h3>'
        + (f'<p class="gallery-creator">by {escape(by)}</p>' if by else "")
        + (f'<div class="gallery-badges">{marks}</div>' if marks else "")
        + (f'<div class="gallery-tags">{chips}</div>' if chips else "")
        + f'<p class="gallery-summary">{escape(summary(agent))}</p>'
        '<div class="gallery-actions">'
        f'<button type="button" class="gallery-chat" data-action="chat" data-agent="{agent_id}">'
        "Chat</button>"
        f'<button type="button" class="gallery-edit" data-action="edit" data-agent="{agent_id}">'
        "Edit</button>"
        "</div></div></article>"
    )


def grid_html(cards: Sequence[str], empty: str = "") -> str:
    """The cards, or the empty state's message (plain text, escaped here) when none."""
    if not cards:
        return f'<div class="gallery-empty" role="status">{escape(empty)}</div>'
    return f'<div class="gallery-grid">{"".join(cards)}</div>'


# Clicks on the cards become the component's ``click`` event (``{action, agent, tag}``), and
# a card file dropped anywhere on the gallery goes to the import button's file input, so it
# is uploaded exactly as if it had been picked there.
GRID_JS = """
element.addEventListener('click', (event) => {
  const target = event.target.closest('[data-action]');
  if (!target || !element.contains(target)) return;
  event.preventDefault();
  trigger('click', {
    action: target.dataset.action,
    agent: target.dataset.agent || '',
    tag: target.dataset.tag || '',
  });
});
const zone = element.closest('#gallery') || element;
if (!zone.dataset.dropReady) {
  zone.dataset.dropReady = '1';
  let depth = 0;
  const carriesFiles = (event) =>
    Array.from((event.dataTransfer && event.dataTransfer.types) || []).includes('Files');
  const done = () => { depth = 0; zone.classList.remove('gallery-dragging'); };
  zone.addEventListener('dragenter', (event) => {
    if (!carriesFiles(event)) return;
    event.preventDefault();
    depth += 1;
    zone.classList.add('gallery-dragging');
  });
  zone.addEventListener('dragover', (event) => {
    if (carriesFiles(event)) event.preventDefault();
  });
  zone.addEventListener('dragleave', () => {
    depth = Math.max(0, depth - 1);
    if (!depth) done();
  });
  zone.addEventListener('drop', (event) => {
    const files = event.dataTransfer && event.dataTransfer.files;
    done();
    if (!files || !files.length) return;
    event.preventDefault();
    // Gradio puts the upload button's file input beside the button, not inside it.
    const button = document.querySelector('#gallery-import');
    const input = button && button.parentElement.querySelector('input[type=file]');
    if (!input) return;
    const picked = new DataTransfer();
    picked.items.add(files[0]);
    input.files = picked.files;
    input.dispatchEvent(new Event('change', {bubbles: true}));
  });
}
"""

# Rules start at #gallery-grid so they win over Gradio's own button and prose styles.
CSS = """
#gallery { position: relative; }
#gallery-bar, #gallery-filters { gap: 8px; align-items: center; }
#gallery-new, #gallery-import { white-space: nowrap; min-height: 42px; }
#gallery-filters { flex-wrap: wrap; }
#gallery-grid .html-container { padding: 0; }
#gallery-grid .gallery-grid {
  display: grid; gap: 14px;
  grid-template-columns: repeat(auto-fill, minmax(220px, 1fr));
}
#gallery-grid button {
  all: unset; box-sizing: border-box; cursor: pointer; font: inherit;
}
#gallery-grid button:focus-visible { outline: 2px solid var(--color-accent); outline-offset: 2px; }
#gallery-grid .gallery-card {
  display: flex; flex-direction: column; overflow: hidden; border-radius: 12px;
  border: 1px solid var(--border-color-primary);
  background: var(--block-background-fill);
}
#gallery-grid .gallery-card:hover { border-color: var(--color-accent); }
#gallery-grid .gallery-open { display: block; width: 100%; }
#gallery-grid .gallery-avatar {
  display: block; width: 100%; aspect-ratio: 4 / 3; object-fit: cover; margin: 0;
  background: var(--background-fill-secondary);
}
#gallery-grid .gallery-initial {
  display: flex; align-items: center; justify-content: center;
  font-size: 3rem; font-weight: 700; color: #fff;
  background: hsl(var(--hue) 45% 42%);
}
#gallery-grid .gallery-body {
  display: flex; flex-direction: column; gap: 6px; padding: 10px 12px 12px; flex: 1;
  min-width: 0;
}
#gallery-grid .gallery-name {
  margin: 0; font-size: 1.05rem; font-weight: 600; line-height: 1.3;
  overflow: hidden; text-overflow: ellipsis; white-space: nowrap;
}
#gallery-grid .gallery-creator {
  margin: 0; font-size: 0.85rem; color: var(--body-text-color-subdued);
}
#gallery-grid .gallery-badges, #gallery-grid .gallery-tags {
  display: flex; flex-wrap: wrap; gap: 4px;
}
#gallery-grid .gallery-badge {
  font-size: 0.72rem; padding: 1px 8px; border-radius: 999px; font-weight: 600;
  background: var(--background-fill-secondary); border: 1px solid var(--border-color-primary);
}
#gallery-grid .gallery-badge-minted { background: #fde68a; color: #713f12; border-color: #f59e0b; }
#gallery-grid .gallery-badge-voice { background: #dbeafe; color: #1e3a8a; border-color: #93c5fd; }
#gallery-grid .gallery-badge-knowledge {
  background: #dcfce7; color: #14532d; border-color: #86efac;
}
#gallery-grid .gallery-badge-finetune {
  background: #f3e8ff; color: #581c87; border-color: #d8b4fe;
}
#gallery-grid .gallery-badge-private, #gallery-grid .gallery-badge-unlisted {
  background: #fee2e2; color: #7f1d1d; border-color: #fca5a5;
}
#gallery-grid .gallery-tag {
  font-size: 0.75rem; line-height: 1.5; padding: 0 8px; border-radius: 999px;
  border: 1px solid var(--border-color-primary); color: var(--body-text-color);
}
#gallery-grid .gallery-tag:hover { border-color: var(--color-accent); color: var(--color-accent); }
#gallery-grid .gallery-more { font-size: 0.75rem; color: var(--body-text-color-subdued); }
#gallery-grid .gallery-summary {
  margin: 0; font-size: 0.85rem; line-height: 1.4; color: var(--body-text-color-subdued);
  display: -webkit-box; -webkit-line-clamp: 3; -webkit-box-orient: vertical; overflow: hidden;
}
#gallery-grid .gallery-actions { display: flex; gap: 8px; margin-top: auto; padding-top: 4px; }
#gallery-grid .gallery-actions button {
  flex: 1; text-align: center; padding: 6px 0; border-radius: 8px; font-weight: 600;
  border: 1px solid var(--border-color-primary); background: var(--background-fill-secondary);
  color: var(--body-text-color);
}
#gallery-grid .gallery-actions button:hover { border-color: var(--color-accent); }
#gallery-grid .gallery-actions .gallery-chat {
  background: var(--button-primary-background-fill); color: var(--button-primary-text-color);
  border-color: transparent;
}
#gallery-grid .gallery-empty {
  padding: 48px 16px; text-align: center; font-size: 1rem;
  border: 2px dashed var(--border-color-primary); border-radius: 12px;
  color: var(--body-text-color-subdued);
}
#gallery-pager { align-items: center; justify-content: center; gap: 12px; }
#gallery-pager > * { flex: 0 1 auto; min-width: 0; }
#gallery-page p { margin: 0; text-align: center; white-space: nowrap; }
#gallery.gallery-dragging::after {
  content: "Drop the card (PNG, JSON or CHARX) to import it";
  position: absolute; inset: 0; z-index: 50; display: flex; align-items: center;
  justify-content: center; font-size: 1.2rem; font-weight: 600; border-radius: 12px;
  border: 3px dashed var(--color-accent); background: rgba(255, 255, 255, 0.85);
  color: #111; pointer-events: none;
}
@media (max-width: 640px) {
  #gallery-grid .html-container { padding: 0; }
#gallery-grid .gallery-grid { grid-template-columns: 1fr; gap: 10px; }
  #gallery-grid .gallery-card { display: grid; grid-template-columns: 96px 1fr; }
  #gallery-grid .gallery-open { height: 100%; }
  #gallery-grid .gallery-avatar { aspect-ratio: auto; height: 100%; min-height: 128px; }
  #gallery-grid .gallery-initial { font-size: 2rem; }
  #gallery-grid .gallery-body { padding: 8px 10px; }
}
"""
