"""The gallery's handlers: plain values in, named updates out (no components here).

The search, the filters and the page travel with every event, so what the gallery shows is
always one ``AgentService.search_agents`` call: the same query ``GET /api/agents`` makes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gradio as gr

from agents.agent_search import OWNER_ME, AgentPage, AgentQuery
from agents.views import AgentView
from container import Services
from core.errors import AnimaError
from core.principal import Principal
from ui.common import agent_choices, show_error
from ui.gallery.cards import Badge, card_html, grid_html, short_address
from ui.wiring import Updates

PAGE_SIZE = 24
ALL, MINE = "All agents", "Mine"
SCOPES = (ALL, MINE)
ANY_TAG = ""
SORT_CHOICES = [("Recent", "recent"), ("Name", "name"), ("Oldest", "oldest")]
SCREENS_OPENED = {"chat": "chat", "edit": "agents"}  # card action -> the tab it opens

NO_AGENTS = (
    "No agents yet. Press “New agent” to write one, or drop a character card (PNG, JSON or "
    "CHARX) anywhere on this page to import it."
)
NO_MATCH = "No agent matches. Clear the search, pick another tag or show all agents."
NOT_SIGNED_IN = (
    "Sign in with your wallet (at the top of the page) to see your agents: what you create "
    "or import while signed in is yours."
)
NONE_OF_YOURS = (
    "You have no agents yet. Press “New agent” to write one, or drop a character card here to "
    "import it."
)


def show(
    services: Services,
    q: str | None,
    scope: str | None,
    tag: str | None,
    sort: str | None,
    offset: Any,
    *,
    principal: Principal,
) -> Updates:
    """The page at ``offset`` of the agents that match (past the end: the last page)."""
    query = AgentQuery(
        q=q or "",
        tag=tag or ANY_TAG,
        owner=OWNER_ME if scope == MINE else None,
        sort=sort or "recent",
        limit=PAGE_SIZE,
        offset=max(0, int(offset or 0)),
    )
    try:
        page = services.agents.search_agents(query, principal=principal)
        if not page.agents and page.total:  # the list shrank under us: show its last page
            last = (page.total - 1) // PAGE_SIZE * PAGE_SIZE
            page = services.agents.search_agents(_at(query, last), principal=principal)
    except AnimaError as exc:
        return {"status": show_error(exc)}
    filtered = bool(query.q or query.tag)
    return {
        "grid": render(services, page, _empty_message(query, filtered, principal)),
        "pager": _pager(page),
        "prev": gr.update(interactive=page.offset > 0),
        "next": gr.update(interactive=page.next_offset is not None),
        "offset": page.offset,
        "status": "",
    }


def search(
    services: Services,
    q: str | None,
    scope: str | None,
    tag: str | None,
    sort: str | None,
    *,
    principal: Principal,
) -> Updates:
    """A new search or filter starts at the first page."""
    return show(services, q, scope, tag, sort, 0, principal=principal)


def next_page(services: Services, *filters: Any, principal: Principal) -> Updates:
    """``filters``: the search, scope, tag, sort and the current offset, as for ``show``."""
    *shown, offset = filters
    return show(services, *shown, int(offset or 0) + PAGE_SIZE, principal=principal)


def prev_page(services: Services, *filters: Any, principal: Principal) -> Updates:
    *shown, offset = filters
    return show(services, *shown, max(0, int(offset or 0) - PAGE_SIZE), principal=principal)


def tag_choices(services: Services, current: str | None, *, principal: Principal) -> Updates:
    """The tag filter's choices: the caller's visible tags, most used first."""
    tags = services.agents.visible_tags(principal=principal)
    choices = [("All tags", ANY_TAG), *((f"{tag} ({count})", tag) for tag, count in tags)]
    return {"tag": gr.update(choices=choices, value=current or ANY_TAG)}


def render(services: Services, page: AgentPage, empty: str) -> str:
    return grid_html([card_html(a, badges(services, a)) for a in page.agents], empty)


def badges(services: Services, agent: AgentView) -> list[Badge]:
    """What sets this agent apart: minted (to whom), a voice, knowledge, a fine-tune."""
    found = []
    if agent.mint_state == "minted":
        owner = short_address(agent.owner_address) or "its owner"
        found.append(Badge("minted", "Minted", f"An on-chain token owned by {owner}"))
    if agent.visibility != "public":
        found.append(Badge(agent.visibility, agent.visibility.capitalize(), _HIDDEN_TITLE))
    if services.voice.has_profile(agent.id):
        found.append(Badge("voice", "Voice", "Speaks with its own cloned voice"))
    if services.knowledge.bases_for_agent(agent.id):
        found.append(Badge("knowledge", "Knowledge", "Answers from its own documents"))
    if agent.adapter:
        found.append(Badge("finetune", "Fine-tuned", "Uses a fine-tuned LoRA adapter"))
    return found


_HIDDEN_TITLE = "Only you see it in lists"


def import_card(services: Services, path: str | None, *, principal: Principal) -> Updates:
    """A card file dropped on the gallery or picked with Import: a new agent of the caller's.
    Errors are the service's own sentences (what is wrong with the file)."""
    if not path:
        return {"status": ""}
    file = Path(path)
    try:
        agent = services.agents.import_card(
            file.name, file.read_bytes(), owner=principal.address, principal=principal
        )
    except AnimaError as exc:
        return {"status": show_error(exc)}
    return {"status": f"Imported **{agent.name}**. It is first under “Recent”."}


def open_card(
    services: Services,
    action: str | None,
    agent_id: str | None,
    tag: str | None,
    chat_asked: int | None,
    agents_asked: int | None,
    *,
    principal: Principal,
) -> Updates:
    """A click on a card: ``chat`` or ``edit`` switch to that tab with the agent picked;
    ``tag`` filters the gallery by that tag."""
    if action == "tag":
        return {"tag": tag or ANY_TAG, "offset": 0}
    screen = SCREENS_OPENED.get(action or "")
    if screen is None:
        return {}
    try:
        services.agents.require_visible(agent_id or "", principal=principal)
    except AnimaError as exc:
        return {"status": show_error(exc)}
    asked = {"chat": chat_asked, "agents": agents_asked}[screen]
    return {
        "tabs": gr.update(selected=screen),
        f"{screen}_picker": gr.update(choices=agent_choices(services, principal), value=agent_id),
        f"{screen}_asked": (asked or 0) + 1,
    }


def new_agent(services: Services, agents_asked: int | None) -> Updates:
    """ "New agent": the editor, with an empty form."""
    return {
        "tabs": gr.update(selected="agents"),
        "agents_picker": gr.update(value=None),
        "agents_asked": (agents_asked or 0) + 1,
    }


def _at(query: AgentQuery, offset: int) -> AgentQuery:
    return AgentQuery(query.q, query.tag, query.owner, query.sort, query.limit, offset)


def _pager(page: AgentPage) -> str:
    if not page.total:
        return ""
    pages = (page.total - 1) // PAGE_SIZE + 1
    current = page.offset // PAGE_SIZE + 1
    noun = "agent" if page.total == 1 else "agents"
    return f"Page {current} of {pages} · {page.total:,} {noun}"


def _empty_message(query: AgentQuery, filtered: bool, principal: Principal) -> str:
    if filtered:
        return NO_MATCH
    if query.owner == OWNER_ME:
        return NONE_OF_YOURS if principal.address else NOT_SIGNED_IN
    return NO_AGENTS
