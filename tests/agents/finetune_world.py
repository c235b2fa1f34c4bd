"""Characters to fine-tune on and one shared, really trained set of adapters for the tests.

Training is the expensive part of the fine-tune tests (a few seconds per step on two cores),
so the session trains once: a pirate (two versions) and a robot, on the bundled model, through
the real durable job. Tests that change an agent's state (activate, roll back, delete) set the
state they need first, and delete only what no other test uses.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

from agents.finetune.schema import FinetuneSettings, RunView
from agents.schema import ChatMessage
from agents.service import AgentView
from container import Services, build_services
from core.principal import SYSTEM
from core.settings import Settings

# A few optimizer steps at a high learning rate: enough to move a 135M model's greedy output,
# small enough for the test budget.
TINY = FinetuneSettings(
    max_steps=6,
    batch_size=2,
    learning_rate=3e-3,
    max_seq_len=160,
    checkpoint_every=3,
    eval_samples=2,
    eval_max_new_tokens=12,
)
GREEDY = {"max_new_tokens": 12, "temperature": 0.0}
PROMPT = [ChatMessage(role="user", content="What do you do all day?")]


def pirate_examples(n: int, seed: int = 1) -> str:
    rng = random.Random(seed)
    questions = ["Where are we sailing?", "Is there treasure?", "Do you like rum?", "Hello!"]
    things = ["the Skull Isles", "me buried gold", "a barrel of dark rum", "the kraken's reef"]
    blocks = []
    for _ in range(n):
        reply = (
            f"Arr, matey! *taps his wooden leg* Ye be askin' about {rng.choice(things)}. Yo-ho-ho!"
        )
        blocks.append(f"<START>\n{{{{user}}}}: {rng.choice(questions)}\n{{{{char}}}}: {reply}")
    return "\n".join(blocks)


def robot_examples(n: int, seed: int = 2) -> str:
    rng = random.Random(seed)
    questions = ["What are you?", "How are you?", "Can you help me?", "What time is it?"]
    facts = ["SYSTEMS NOMINAL", "TASK QUEUE EMPTY", "BATTERY AT 97 PERCENT", "SCANNING HUMAN"]
    blocks = []
    for _ in range(n):
        reply = f"BEEP BOOP. {rng.choice(facts)}. UNIT-7 COMPLIES. END OF LINE."
        blocks.append(f"<START>\n{{{{user}}}}: {rng.choice(questions)}\n{{{{char}}}}: {reply}")
    return "\n".join(blocks)


PIRATE = {
    "name": "Captain Brine",
    "description": "{{char}} is an old pirate captain.",
    "first_mes": "Arr, welcome aboard, {{user}}!",
    "mes_example": pirate_examples(10),
}
ROBOT = {
    "name": "Unit Seven",
    "description": "{{char}} is a service robot that speaks in capitals.",
    "first_mes": "BEEP. UNIT-7 ONLINE.",
    "mes_example": robot_examples(10),
}


@dataclass
class FinetuneWorld:
    services: Services
    pirate: AgentView
    robot: AgentView
    pirate_v1: RunView
    pirate_v2: RunView
    robot_v1: RunView

    def reply(self, services: Services, agent_id: str) -> str:
        """A greedy reply through the served chat path."""
        return services.chat.complete(agent_id, PROMPT, GREEDY).collect()


def build_world(data_dir: Path, model_cache_dir: Path) -> FinetuneWorld:
    # Replies are compared for equality across processes and adapter sets, which needs a
    # bit-for-bit reproducible engine: transformers. The llama.cpp engine (the default) is
    # tested on these adapters too, by what its replies sound like (test_finetune.py).
    settings = Settings(
        data_dir=data_dir,
        model_cache_dir=model_cache_dir,
        llm_preload=False,
        llm_engine="transformers",
        allowed_hosts="testserver",  # what fastapi's TestClient sends as Host
    )
    services = build_services(settings)
    pirate = services.agents.create_agent(PIRATE, principal=SYSTEM)
    robot = services.agents.create_agent(ROBOT, principal=SYSTEM)
    first = services.finetune.start(pirate.id, options=TINY, principal=SYSTEM)
    robot_run = services.finetune.start(robot.id, options=TINY, principal=SYSTEM)
    for run in (first, robot_run):
        assert run.job is not None
        job = services.jobs.wait(run.job.id, timeout=900, principal=SYSTEM)
        assert job.status == "succeeded", job
    tweak = TINY.model_copy(update={"max_steps": 2, "seed": 7, "eval_samples": 1})
    second = services.finetune.start(pirate.id, options=tweak, principal=SYSTEM)
    assert second.job is not None
    assert services.jobs.wait(second.job.id, timeout=900, principal=SYSTEM).status == "succeeded"
    # Hand back the process-wide job runtime (dbos): other tests' services launch their own,
    # and taking it over from a live one costs them seconds. A later submit here relaunches.
    services.jobs.close()
    get = services.finetune.get_run
    return FinetuneWorld(
        services=services,
        pirate=services.agents.get_agent(pirate.id),
        robot=services.agents.get_agent(robot.id),
        pirate_v1=get(pirate.id, first.id),
        pirate_v2=get(pirate.id, second.id),
        robot_v1=get(robot.id, robot_run.id),
    )
