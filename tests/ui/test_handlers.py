"""The studio's handlers without a browser: plain values in, named updates out.

A handler that acts for a user gets a ``Principal``; these tests hand one in directly, the way
``ui.wiring`` does from the browser's session cookie.
"""

from __future__ import annotations

import gradio as gr
import pytest

from agents.finetune.schema import FinetuneSettings
from agents.schema import GenerationSettings
from container import Services
from core.principal import ANONYMOUS, SYSTEM, Principal
from ui import widgets
from ui.agents import handlers as agents
from ui.agents.fields import generation_fields
from ui.agents.form import FORM_KEYS, form_values
from ui.agents.layout import EditorForm, build_agents_screen
from ui.chat import handlers as chat
from ui.context import StudioContext
from ui.panels.finetune import handlers as finetune
from ui.panels.knowledge import handlers as knowledge
from ui.panels.voice import handlers as voice
from ui.studio import SCREENS, Screen, build_ui
from ui.wallet import handlers as wallet
from ui.wiring import pack

OWNER = "0x1111111111111111111111111111111111111111"
STRANGER = Principal(address="0x2222222222222222222222222222222222222222", via="session")


def _owned(services: Services, name: str = "Brine") -> str:
    return services.agents.create_agent({"name": name}, owner=OWNER, principal=SYSTEM).id


def _form(services: Services, agent_id: str, **changes: str) -> dict:
    return {**form_values(services.agents.get_agent(agent_id)), **changes}


def test_a_stranger_editing_an_owned_agent_is_told_why_and_nothing_changes(
    services: Services,
) -> None:
    agent_id = _owned(services)
    values = _form(services, agent_id, name="Hijacked", description="mine now")

    result = agents.save(services, agent_id, None, False, values, principal=STRANGER)

    assert "belongs to" in result["status"] and OWNER in result["status"]
    assert set(result) == {"status"}  # the form keeps what the user typed
    stored = services.agents.get_agent(agent_id)
    assert stored.name == "Brine" and not stored.data.get("description")

    deleted = agents.delete(services, agent_id, principal=STRANGER)
    assert "belongs to" in deleted["status"] and "picker" not in deleted
    assert [a.id for a in services.agents.list_agents()] == [agent_id]


def test_the_other_panels_refuse_a_stranger_too(services: Services) -> None:
    agent_id = _owned(services)
    refused = [
        voice.drop(services, agent_id, principal=STRANGER)["quality"],
        knowledge.create(services, agent_id, "Lore", principal=STRANGER)["status"],
        finetune.act(services, "rollback", agent_id, None, None, principal=STRANGER)["status"],
    ]
    assert refused and all("belongs to" in message for message in refused)
    assert services.knowledge.list_bases() == []  # the base was never created


def test_the_owner_saves_only_what_changed_and_the_picker_follows(services: Services) -> None:
    agent_id = _owned(services)
    owner = Principal(address=OWNER, via="session")
    values = _form(services, agent_id, description="A salty sea dog.", temperature=1.7)

    result = agents.save(services, agent_id, None, False, values, principal=owner)

    assert result["status"] == "Saved **Brine**: description, temperature."
    assert result["picker"]["value"] == agent_id
    assert result["description"] == "A salty sea dog." and result["temperature"] == 1.7
    stored = services.agents.get_agent(agent_id)
    assert stored.data["description"] == "A salty sea dog."
    assert stored.generation.temperature == 1.7


def test_the_save_summary_names_each_changed_field_and_counts_greetings(
    services: Services,
) -> None:
    agent = services.agents.create_agent(
        {"name": "Orla", "alternate_greetings": ["Ahoy.", "Storm tonight."]}, principal=SYSTEM
    )
    values = _form(services, agent.id, description="Keeps the lighthouse.", tags="sea, lamp")
    values["alternate_greetings"] = ["Ahoy.", "The lamp is lit.", "Storm tonight.", "  "]

    result = agents.save(services, agent.id, None, False, values, principal=SYSTEM)

    # Positions 2 and 3 now differ (one inserted, one moved down); the blank row is dropped.
    assert result["status"] == "Saved **Orla**: description, 2 greetings, tags."
    stored = services.agents.get_agent(agent.id)
    assert stored.data["alternate_greetings"] == ["Ahoy.", "The lamp is lit.", "Storm tonight."]
    assert result["alternate_greetings"] == stored.data["alternate_greetings"]  # reloaded as saved

    reordered = {
        **form_values(stored),
        "alternate_greetings": list(reversed(stored.data["alternate_greetings"])),
    }
    moved = agents.save(services, agent.id, None, False, reordered, principal=SYSTEM)
    assert moved["status"] == "Saved **Orla**: greetings reordered."
    removed = {
        **form_values(services.agents.get_agent(agent.id)),
        "alternate_greetings": ["Storm tonight."],
    }
    assert agents.save(services, agent.id, None, False, removed, principal=SYSTEM)["status"] == (
        "Saved **Orla**: 2 greetings."
    )
    assert services.agents.get_agent(agent.id).data["alternate_greetings"] == ["Storm tonight."]
    unchanged = form_values(services.agents.get_agent(agent.id))
    assert agents.save(services, agent.id, None, False, unchanged, principal=SYSTEM)["status"] == (
        "Nothing to save: **Orla** has no changes."
    )


def test_a_refused_save_keeps_the_form_and_says_why(services: Services) -> None:
    agent_id = _owned(services)
    values = _form(services, agent_id, name="   ", description="typed, not lost")

    result = agents.save(
        services, agent_id, None, False, values, principal=Principal(address=OWNER, via="session")
    )

    assert set(result) == {"status"} and result["status"].startswith("⚠️")
    assert services.agents.get_agent(agent_id).name == "Brine"


def test_keeping_unsaved_edits_undoes_the_switch_and_leaves_the_form(services: Services) -> None:
    first, second = _owned(services, "Brine"), _owned(services, "Kelp")

    kept = agents.load(services, second, first, agents.STAY)
    assert kept == {"picker": gr.update(value=first)}  # nothing else: the typed form stays
    assert agents.new(services, agents.STAY) == {}

    switched = agents.load(services, second, first, "")
    assert switched["name"] == "Kelp" and switched["confirm_row"] == gr.update(visible=False)
    assert agents.new(services, "")["name"] == ""


def test_an_anonymous_draft_is_created_with_the_form_values(services: Services) -> None:
    values = {**form_values(None), "name": "  Drifter  ", "tags": "sea, salt"}
    assert set(values) == set(FORM_KEYS)

    result = agents.save(services, None, None, False, values, principal=ANONYMOUS)

    assert result["status"] == "Created **Drifter**."
    (agent,) = services.agents.list_agents()
    assert agent.owner_address is None and agent.data["tags"] == ["sea", "salt"]
    assert result["picker"]["value"] == agent.id


def test_a_chat_needs_a_message_and_an_agent(services: Services) -> None:
    (empty,) = list(chat.send(services, None, None, "User", "  ", principal=ANONYMOUS))
    assert set(empty) == {"status"} and "write a message first" in empty["status"]
    assert (
        "pick an agent first"
        in chat.new_chat(services, None, "User", principal=ANONYMOUS)["status"]
    )


def test_the_generation_controls_take_the_schema_bounds_and_defaults() -> None:
    controls: dict = {}
    with gr.Blocks():
        generation_fields(controls)
    fields = ("max_new_tokens", "temperature", "top_p", "top_k", "repetition_penalty")
    assert sorted(controls) == sorted(fields)
    for name in fields:
        low, high = widgets.bounds(GenerationSettings, name)
        open_low, _ = widgets.exclusive(GenerationSettings, name)
        control = controls[name]
        assert control.value == GenerationSettings.model_fields[name].default, name
        assert control.maximum == high, name
        if open_low:  # top_p > 0: the slider starts one step above
            assert low is not None and control.minimum > low, name
        else:
            assert control.minimum == low, name
    assert controls["temperature"].maximum == 5.0
    assert controls["repetition_penalty"].maximum == 3.0


def test_the_finetune_form_sends_only_what_the_user_set() -> None:
    knobs = {"epochs": 2.0, "learning_rate": None, "lora_r": 16.0, "max_seq_len": 256.0}
    settings = finetune.options(True, False, knobs)
    assert settings.lora_r == 16 and settings.max_seq_len == 256 and settings.epochs == 2.0
    # Rules between settings (LoRA alpha follows the rank) are the schema's business, so the
    # studio's run trains exactly as the same request over the API would.
    assert settings.lora_alpha == 2 * settings.lora_r
    assert settings == FinetuneSettings.model_validate(settings.model_dump(exclude={"lora_alpha"}))
    assert "learning_rate" not in settings.model_fields_set
    assert settings.learning_rate == FinetuneSettings().learning_rate


def test_named_updates_fill_outputs_in_order_and_unknown_names_fail() -> None:
    assert pack(["a", "b"], {"b": 2}) == [gr.skip(), 2]
    assert pack(["a"], {"a": 1}) == 1  # one output: the value itself, not a list
    with pytest.raises(KeyError, match="typo"):
        pack(["a"], {"typo": 1})


def test_every_agent_picker_follows_the_agents_changed_signal(services: Services) -> None:
    demo = build_ui(services)
    config = demo.get_config_file()
    ids = {c["id"]: c.get("props", {}).get("elem_id") for c in config["components"]}
    states = {c["id"] for c in config["components"] if c.get("type") == "state"}
    followers = {
        ids[out]
        for dep in config["dependencies"]
        if any(t[1] == "change" and t[0] in states for t in dep["targets"])
        and len(dep["outputs"]) == 1
        for out in dep["outputs"]
    }
    assert {"agent-select", "chat-agent"} <= followers


def test_the_sign_in_bar_describes_the_session(services: Services) -> None:
    shown = wallet.refresh(services, principal=ANONYMOUS)
    assert shown["status"].startswith("**Not signed in.**")
    assert shown["choice"]["value"] is None


def test_a_new_screen_plugs_into_the_registry(services: Services) -> None:
    seen: list[StudioContext] = []

    def build_sample(ctx: StudioContext) -> None:
        seen.append(ctx)
        ctx.agent_picker(label="Agent", elem_id="sample-agent")

    screens = (*SCREENS, Screen("sample", "Sample", build_sample))
    config = build_ui(services, screens).get_config_file()
    elem_ids = {c.get("props", {}).get("elem_id") for c in config["components"]}
    assert {"tab-agents", "tab-sample", "sample-agent"} <= elem_ids
    assert len(seen) == 1 and seen[0].services is services
    # The gallery is the landing tab, no longer a planned one.
    assert SCREENS[0].id == "gallery"


def test_a_docked_panel_is_built_beside_the_editor_with_the_form(services: Services) -> None:
    seen: list[EditorForm] = []

    def inspector(ctx: StudioContext, form: EditorForm) -> None:
        seen.append(form)
        gr.Markdown("preview", elem_id="dock-probe")

    with gr.Blocks() as demo:
        screen = build_agents_screen(StudioContext(services), dock=[inspector])
    config = demo.get_config_file()
    by_id = {c["id"]: c.get("props", {}) for c in config["components"]}
    dock = next(i for i, props in by_id.items() if props.get("elem_id") == "agent-dock")
    probe = next(i for i, props in by_id.items() if props.get("elem_id") == "dock-probe")
    assert by_id[dock].get("visible") is not False

    def children(node: dict) -> list[dict]:
        return node.get("children", [])

    def find(node: dict, target: int) -> dict | None:
        if node["id"] == target:
            return node
        return next((hit for kid in children(node) if (hit := find(kid, target))), None)

    dock_node = find(config["layout"], dock)
    assert dock_node is not None and find(dock_node, probe) is not None
    (form,) = seen
    assert form is screen.form and len(form.inputs) == len(FORM_KEYS)
    assert form.values(*range(len(FORM_KEYS)))["name"] == FORM_KEYS.index("name")
