"""The Models screen's handlers without a browser: what a visitor and the operator see, errors
next to the form that caused them, the default and an agent's model picked from connections."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator

import pytest

from container import Services
from core.principal import ANONYMOUS, Principal
from ui.models import handlers

OPERATOR = Principal(address="0x00000000000000000000000000000000000000C3", via="session")


@pytest.fixture
def hf_folder(services: Services) -> Iterator[str]:
    """A Hugging Face-style folder in the models folder (its metadata is all a test reads)."""
    name = f"test-hf-{uuid.uuid4().hex[:8]}"
    folder = services.settings.models_dir / name
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(
        '{"architectures": ["LlamaForCausalLM"], "max_position_embeddings": 4096}'
    )
    (folder / "model.safetensors").write_bytes(b"")
    yield name
    shutil.rmtree(folder, ignore_errors=True)


def test_a_visitor_sees_the_default_and_the_way_to_a_real_model(services: Services) -> None:
    shown = handlers.refresh(services, principal=ANONYMOUS)
    assert "SmolLM2-135M-Instruct (bundled)" in shown["summary"]
    assert "toy" in shown["summary"] and "Sign in as the operator" in shown["summary"]
    assert "http://127.0.0.1:11434/v1" in shown["how_to"]
    assert "<data_dir>/models" in shown["how_to"]  # the real folder is for operators
    assert shown["table"]["value"] == [] and shown["table"]["visible"] is False
    assert shown["empty"]["visible"] is True
    refused = handlers.add_local(services, "x", "/etc", principal=ANONYMOUS)
    assert refused == {
        "local_status": "⚠️ sign in to change model connections (they serve every agent)"
    }


def test_the_operator_adds_a_model_makes_it_default_and_gives_it_to_an_agent(
    services: Services, hf_folder: str
) -> None:
    bad = handlers.add_local(services, "mine", "../../etc", principal=OPERATOR)
    assert set(bad) == {"local_status"}  # only the message: the form keeps what was typed
    assert bad["local_status"].startswith("⚠️") and "ANIMA_MODEL_DIRS" in bad["local_status"]

    tested = handlers.test_local(services, "mine", hf_folder, principal=OPERATOR)
    assert tested["local_status"].startswith("It answered. Models: " + hf_folder)
    assert (
        handlers.refresh(services, principal=OPERATOR)["table"]["value"] == []
    )  # a test saves nothing
    added = handlers.add_local(services, "mine", hf_folder, principal=OPERATOR)
    assert added["local_status"].startswith("Added mine.")
    assert added["table"]["value"][0][:2] == ["mine", "local"]
    assert "LlamaForCausalLM" in added["table"]["value"][0][5]
    ref = f"conn:mine/{hf_folder}"
    assert (f"mine: {hf_folder}", ref) in added["default"]["choices"]

    made = handlers.set_default(services, ref, principal=OPERATOR)
    assert ref in made["summary"] and "toy" not in made["summary"]
    assert made["default"]["value"] == ref
    assert "loads at start-up" in handlers.load(services, "", principal=OPERATOR)["status"]

    agent = services.agents.create_agent({"name": "Ada"}, principal=ANONYMOUS)
    picked = handlers.load_agent_model(services, agent.id, principal=ANONYMOUS)
    assert picked["agent_model"]["value"] == handlers.SETTINGS_DEFAULT
    assert (f"mine: {hf_folder}", ref) in picked["agent_model"]["choices"]
    saved = handlers.save_agent_model(services, agent.id, ref, principal=ANONYMOUS)
    assert saved["agent_model_status"] == f"Saved: Ada now answers with {ref}."
    assert services.agents.get_agent(agent.id).model == ref
    unsaved = handlers.load_agent_model(services, None, principal=ANONYMOUS)
    assert unsaved["agent_model"]["interactive"] is False

    gone = handlers.delete(services, "mine", principal=OPERATOR)
    assert gone["table"]["value"] == [] and "fall back to the default" in gone["status"]
    assert "SmolLM2-135M-Instruct (bundled)" in gone["summary"]
    assert handlers.delete(services, None, principal=OPERATOR)["status"].startswith("⚠️")


def test_the_models_screen_is_a_screen_now() -> None:
    from ui.studio import SCREENS

    assert "models" in {screen.id for screen in SCREENS}
