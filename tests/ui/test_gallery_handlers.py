"""The gallery's handlers without a browser: safe HTML, badges, empty states, paging and the
one-click openings."""

from __future__ import annotations

from agents.records import AgentRecord
from container import Services
from core.principal import ANONYMOUS, SYSTEM, Principal
from ui.gallery import handlers
from ui.gallery.cards import summary

OWNER = Principal(address="0x1111111111111111111111111111111111111111", via="session")
STRANGER = Principal(address="0x2222222222222222222222222222222222222222", via="session")
HOSTILE = '<img src=x onerror="alert(1)">'


def _show(services: Services, principal: Principal = ANONYMOUS, **kw: object) -> dict:
    values = {"q": "", "scope": handlers.ALL, "tag": "", "sort": "recent", "offset": 0, **kw}
    return handlers.show(services, *values.values(), principal=principal)


def test_every_user_string_in_a_card_is_escaped(services: Services) -> None:
    services.agents.create_agent(
        {
            "name": HOSTILE,
            "tags": ["<b>bold</b>", 'x" onclick="y'],
            "creator": "<script>evil()</script>",
            "description": "{{char}} says <i>hi</i> & waves",
        },
        principal=SYSTEM,
    )
    grid = _show(services)["grid"]
    assert "gallery-card" in grid
    for raw in (HOSTILE, "<b>bold", "<script>", "<i>hi", 'x" onclick'):
        assert raw not in grid
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in grid
    assert "&lt;script&gt;evil()&lt;/script&gt;" in grid
    assert 'data-tag="x&quot; onclick=&quot;y"' in grid


def test_summary_reads_macros_and_stays_short(services: Services) -> None:
    agent = services.agents.create_agent(
        {"name": "Mira", "description": "{{char}} keeps the light for {{user}}. " * 20},
        principal=SYSTEM,
    )
    text = summary(agent)
    assert text.startswith("Mira keeps the light for you.")
    assert len(text) <= 160 and text.endswith("…")


def test_badges_say_what_an_agent_has(services: Services) -> None:
    agent = services.agents.create_agent({"name": "Plain"}, principal=SYSTEM)
    assert handlers.badges(services, agent) == []
    with services.agents.db.session() as s:
        row = s.get(AgentRecord, agent.id)
        row.mint_state, row.owner_address, row.adapter = "minted", OWNER.address, "adapter-1"
        row.visibility = "unlisted"
    keys = [b.key for b in handlers.badges(services, services.agents.get_agent(agent.id))]
    assert keys == ["minted", "unlisted", "finetune"]
    services.knowledge.create_base_for_agent(agent.id, "Lore", principal=SYSTEM)
    keys = [b.key for b in handlers.badges(services, services.agents.get_agent(agent.id))]
    assert keys == ["minted", "unlisted", "knowledge", "finetune"]


def test_empty_states_say_what_to_do(services: Services) -> None:
    assert handlers.NO_AGENTS in _show(services)["grid"]
    assert handlers.NOT_SIGNED_IN in _show(services, scope=handlers.MINE)["grid"]
    assert handlers.NONE_OF_YOURS in _show(services, OWNER, scope=handlers.MINE)["grid"]
    services.agents.create_agent({"name": "Solo"}, principal=SYSTEM)
    assert handlers.NO_MATCH in _show(services, q="nobody by that name")["grid"]
    shown = _show(services)
    assert shown["pager"] == "Page 1 of 1 · 1 agent"
    assert shown["prev"]["interactive"] is False and shown["next"]["interactive"] is False


def test_pages_and_a_page_past_the_end(services: Services) -> None:
    for n in range(handlers.PAGE_SIZE + 3):
        services.agents.create_agent({"name": f"Agent {n:02d}"}, principal=SYSTEM)
    first = _show(services, sort="name")
    assert first["grid"].count('class="gallery-card"') == handlers.PAGE_SIZE
    assert first["next"]["interactive"] is True
    second = handlers.next_page(services, "", handlers.ALL, "", "name", 0, principal=ANONYMOUS)
    assert second["offset"] == handlers.PAGE_SIZE
    assert second["grid"].count('class="gallery-card"') == 3
    assert second["pager"] == "Page 2 of 2 · 27 agents"
    # An offset beyond the end (agents deleted meanwhile) shows the last page.
    assert _show(services, sort="name", offset=500)["offset"] == handlers.PAGE_SIZE
    back = handlers.prev_page(services, "", handlers.ALL, "", "name", 24, principal=ANONYMOUS)
    assert back["offset"] == 0


def test_a_bad_query_is_a_sentence_not_a_traceback(services: Services) -> None:
    shown = _show(services, sort="sideways")
    assert set(shown) == {"status"} and "sort must be one of" in shown["status"]


def test_chat_and_edit_open_the_agent_on_their_tab(services: Services) -> None:
    agent = services.agents.create_agent({"name": "Open me"}, principal=SYSTEM)
    chat = handlers.open_card(services, "chat", agent.id, "", 3, 0, principal=ANONYMOUS)
    assert chat["tabs"]["selected"] == "chat"
    assert chat["chat_picker"]["value"] == agent.id
    assert (agent.id in {v for _, v in chat["chat_picker"]["choices"]}) and chat["chat_asked"] == 4
    edit = handlers.open_card(services, "edit", agent.id, "", 0, None, principal=ANONYMOUS)
    assert edit["tabs"]["selected"] == "agents" and edit["agents_asked"] == 1
    assert handlers.open_card(services, "tag", "", "elf", 0, 0, principal=ANONYMOUS) == {
        "tag": "elf",
        "offset": 0,
    }
    new = handlers.new_agent(services, 2)
    assert new["agents_picker"]["value"] is None and new["agents_asked"] == 3
    assert new["tabs"]["selected"] == "agents"


def test_someone_elses_private_agent_does_not_open(services: Services) -> None:
    private = services.agents.create_agent(
        {"name": "Hidden", "visibility": "private"}, owner=OWNER.address, principal=SYSTEM
    )
    refused = handlers.open_card(services, "chat", private.id, "", 0, 0, principal=STRANGER)
    assert set(refused) == {"status"} and "no agent" in refused["status"]
    mine = handlers.open_card(services, "chat", private.id, "", 0, 0, principal=OWNER)
    assert mine["chat_picker"]["value"] == private.id
