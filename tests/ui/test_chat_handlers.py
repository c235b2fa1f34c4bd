"""The Chat tab's message tools without a browser: plain values in, named updates out.

No reply is generated here: the greeting's versions (the card's greetings) are enough to
swipe, edit, delete and branch.
"""

from __future__ import annotations

from container import Services
from core.principal import SYSTEM, Principal
from ui.chat import handlers
from ui.chat import message_handlers as tools

# A browser's anonymous visitor: the chats it starts or branches are its own.
VISITOR = Principal(address=None, visitor_id="v" * 32)


def _chat(services: Services) -> str:
    agent = services.agents.create_agent(
        {"name": "Mira", "first_mes": "Evening.", "alternate_greetings": ["Ah, you came."]},
        principal=SYSTEM,
    )
    return services.chat.create_conversation(agent.id, "Ned", principal=VISITOR).id


def test_swipes_move_through_the_greetings_and_the_counter_follows(services: Services) -> None:
    conv_id = _chat(services)
    before = handlers.swipe_controls(services, conv_id, principal=VISITOR)
    assert before["counter"] == "1/2"
    (shown,) = list(tools.swipe_right(services, conv_id, principal=VISITOR))
    assert shown["chatbot"] == [{"role": "assistant", "content": "Ah, you came."}]
    after = handlers.swipe_controls(services, conv_id, principal=VISITOR)
    assert after["counter"] == "2/2"
    assert services.chat.get_conversation(conv_id, principal=VISITOR).messages[0].selected == 1
    (back,) = list(tools.swipe_left(services, conv_id, principal=VISITOR))
    assert back["chatbot"][0]["content"] == "Evening."
    assert handlers.swipe_controls(services, None, principal=VISITOR)["counter"] == "–"


def test_edit_pick_delete_and_branch_by_bubble(services: Services) -> None:
    conv_id = _chat(services)
    edited = tools.edit_message(services, conv_id, 0, "Evening, traveller.", principal=VISITOR)
    assert edited["chatbot"][0]["content"] == "Evening, traveller."
    assert edited["status"] == ""
    empty = tools.edit_message(services, conv_id, 0, "  ", principal=VISITOR)
    assert "empty" in empty["status"]
    assert empty["chatbot"][0]["content"] == "Evening, traveller."
    outside = tools.pick_message(services, conv_id, 5, principal=VISITOR)
    assert outside["picked"] is None and outside["status"]

    picked = tools.pick_message(services, conv_id, 0, principal=VISITOR)
    assert (
        picked["picked"]
        == services.chat.get_conversation(conv_id, principal=VISITOR).messages[0].id
    )
    assert "Evening, traveller." in picked["picked_note"]
    branched = tools.branch(services, conv_id, picked["picked"], principal=VISITOR)
    labels = [label for label, _ in branched["conversation"]["choices"]]
    assert any(label.startswith("↳ branch of New chat") for label in labels), labels
    assert branched["chatbot"] == [{"role": "assistant", "content": "Evening, traveller."}]

    nothing = tools.delete_message(services, conv_id, None, principal=VISITOR)
    assert tools.NOTHING_PICKED in nothing["status"]
    gone = tools.delete_message(services, conv_id, picked["picked"], principal=VISITOR)
    assert gone["chatbot"] == [] and gone["picked"] is None
    assert services.chat.get_conversation(conv_id, principal=VISITOR).messages == []


def test_a_reload_reopens_only_what_still_exists(services: Services) -> None:
    conv_id = _chat(services)
    agent_id = services.chat.get_conversation(conv_id, principal=VISITOR).agent_id
    opened = handlers.restore(services, agent_id, conv_id, principal=VISITOR)
    assert opened["conversation"]["value"] == conv_id
    assert opened["chatbot"] == [{"role": "assistant", "content": "Evening."}]
    assert opened["counter"] == "1/2"
    assert (
        handlers.restore(services, agent_id, "gone", principal=VISITOR)["conversation"]["value"]
        is None
    )
    assert handlers.restore(services, "nobody", conv_id, principal=VISITOR) == {}
