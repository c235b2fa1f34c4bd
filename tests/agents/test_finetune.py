"""Fine-tuning for real on the bundled model: the adapter loads, changes replies, survives a
restart, switches per agent in one process, travels in the CHARX; bad input changes nothing.

The adapters come from the session's ``finetune_world`` (``tests/agents/finetune_world.py``),
trained through the real durable job.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import pytest

from agents.finetune.records import AdapterRecord
from agents.finetune.registry import CHARX_FOLDER
from agents.finetune.trainer import latest_checkpoint
from agents.llm.adapters import ADAPTER_META
from agents.llm.model_source import resolve_model
from agents.llm.pool import LLMPool
from container import build_services
from core.errors import AdapterMismatchError, CardFormatError, ConflictError, NotFoundError
from core.principal import SYSTEM
from tests.agents.finetune_world import PIRATE, TINY, FinetuneWorld, robot_examples
from tests.tiny_models import save_tiny_llama
from tests.waiting import wait_until

pytestmark = pytest.mark.model


def _adapter_names(world: FinetuneWorld, agent_id: str) -> list[str]:
    return [a.name for a in world.services.finetune.list_adapters(agent_id)]


def _snapshot(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def test_a_real_run_yields_an_evaluated_adapter_that_loads_and_changes_replies(
    finetune_world: FinetuneWorld,
) -> None:
    world, svc = finetune_world, finetune_world.services
    run = world.pirate_v1
    assert run.stage == "ready" and run.job is not None and run.job.status == "succeeded"
    assert run.job.progress_done == run.job.progress_total == 6
    assert [p.step for p in run.metrics.loss] == [1, 2, 3, 4, 5, 6]  # the live loss curve
    assert run.metrics.training is not None and run.metrics.training.steps == 6
    report = run.metrics.eval
    assert report is not None and report.held_out_dialogues == 2
    assert report.after.perplexity < report.before.perplexity  # it learned the character
    assert report.before.style is not None and report.after.style is not None
    assert report.samples and report.samples[0].reference.startswith("Arr, matey!")

    assert run.adapter is not None and run.adapter.name == run.adapter_name
    folder = svc.settings.adapters_dir / run.adapter.name
    assert sorted(p.name for p in folder.iterdir()) == [
        "adapter_config.json",
        "adapter_model.safetensors",
        ADAPTER_META,
    ]
    meta = json.loads((folder / ADAPTER_META).read_text())
    assert meta["base_model"] == "bundled:smollm2" and meta["agent_id"] == world.pirate.id
    assert meta["eval"]["after"]["perplexity"] == report.after.perplexity
    assert json.loads((folder / "adapter_config.json").read_text())["base_model_name_or_path"] == (
        "bundled:smollm2"
    )
    assert not (
        svc.settings.data_dir / "finetune" / world.pirate.id / run.id / "checkpoints"
    ).exists()

    svc.finetune.deactivate(world.pirate.id, principal=SYSTEM)
    base_reply = world.reply(svc, world.pirate.id)
    svc.finetune.activate(world.pirate.id, run.adapter.name, principal=SYSTEM)
    assert svc.agents.get_agent(world.pirate.id).adapter == run.adapter.name
    adapted_reply = world.reply(svc, world.pirate.id)  # the serving layer loaded the folder
    assert adapted_reply != base_reply, (adapted_reply, base_reply)


def test_the_active_adapter_survives_a_restart(finetune_world: FinetuneWorld) -> None:
    world, svc = finetune_world, finetune_world.services
    name = world.pirate_v1.adapter_name
    svc.finetune.activate(world.pirate.id, name, principal=SYSTEM)
    before = world.reply(svc, world.pirate.id)

    restarted = build_services(svc.settings, llm=LLMPool(svc.settings))  # a fresh process's view
    try:
        assert restarted.agents.get_agent(world.pirate.id).adapter == name
        versions = restarted.finetune.list_adapters(world.pirate.id)
        assert [(a.version, a.active) for a in versions] == [(2, False), (1, True)]
        assert restarted.finetune.get_run(world.pirate.id, world.pirate_v1.id).stage == "ready"
        assert world.reply(restarted, world.pirate.id) == before
    finally:
        restarted.close()


def test_two_agents_adapters_in_one_process_each_give_their_own_reply(
    finetune_world: FinetuneWorld,
) -> None:
    world, svc = finetune_world, finetune_world.services
    svc.finetune.activate(world.pirate.id, world.pirate_v1.adapter_name, principal=SYSTEM)
    svc.finetune.activate(world.robot.id, world.robot_v1.adapter_name, principal=SYSTEM)
    pirate = world.reply(svc, world.pirate.id)
    robot = world.reply(svc, world.robot.id)
    assert world.reply(svc, world.pirate.id) == pirate  # no bleed from the robot's adapter
    assert world.reply(svc, world.robot.id) == robot
    assert pirate != robot

    # Each equals what its adapter gives in a process that never loaded the other one.
    alone = build_services(svc.settings, llm=LLMPool(svc.settings))
    try:
        assert world.reply(alone, world.robot.id) == robot
    finally:
        alone.close()


def _shouts(text: str) -> bool:
    letters = [c for c in text if c.isalpha()]
    return bool(letters) and sum(c.isupper() for c in letters) / len(letters) > 0.6


def test_the_llamacpp_engine_serves_each_agents_adapter_on_one_base_model(
    finetune_world: FinetuneWorld,
) -> None:
    world, svc = finetune_world, finetune_world.services
    settings = svc.settings.model_copy(update={"llm_engine": "llamacpp"})
    engine = build_services(settings, llm=LLMPool(settings))
    try:
        svc.finetune.deactivate(world.robot.id, principal=SYSTEM)
        plain_robot = world.reply(engine, world.robot.id)
        svc.finetune.activate(world.robot.id, world.robot_v1.adapter_name, principal=SYSTEM)
        svc.finetune.activate(world.pirate.id, world.pirate_v1.adapter_name, principal=SYSTEM)
        robot = world.reply(engine, world.robot.id)
        pirate = world.reply(engine, world.pirate.id)
        robot_again = world.reply(engine, world.robot.id)
        replies = (plain_robot, robot, pirate, robot_again)
        assert not _shouts(plain_robot) and _shouts(robot) and _shouts(robot_again), replies
        assert not _shouts(pirate) and pirate != robot, replies
        served = engine.llm.get(None, world.robot_v1.adapter_name)
        assert served.engine_name == "llamacpp"  # the fast engine, not the fallback
    finally:
        engine.close()


def test_versions_activate_roll_back_and_delete(finetune_world: FinetuneWorld) -> None:
    world, fin = finetune_world, finetune_world.services.finetune
    agent = world.pirate.id
    v1, v2 = world.pirate_v1.adapter_name, world.pirate_v2.adapter_name
    assert world.pirate_v2.version == 2 and v1 != v2
    fin.deactivate(agent, principal=SYSTEM)
    fin.activate(agent, v1, principal=SYSTEM)
    fin.activate(agent, v2, principal=SYSTEM)
    assert [a.name for a in fin.list_adapters(agent) if a.active] == [v2]
    assert fin.rollback(agent, principal=SYSTEM).adapter == v1
    # Back to the base model, active before v1:
    assert fin.rollback(agent, principal=SYSTEM).adapter is None
    # (with no history left, a roll back is a 409: see tests/api/test_finetune_api.py)

    fin.activate(agent, v2, principal=SYSTEM)
    with pytest.raises(ConflictError, match="is active"):
        fin.delete_adapter(agent, v2, principal=SYSTEM)
    with pytest.raises(NotFoundError):
        fin.activate(world.robot.id, v1, principal=SYSTEM)  # another agent's version
    fin.activate(agent, v1, principal=SYSTEM)
    fin.delete_adapter(agent, v2, principal=SYSTEM)
    assert _adapter_names(world, agent) == [v1]
    assert not (world.services.settings.adapters_dir / v2).exists()
    with pytest.raises(NotFoundError):
        fin.activate(agent, v2, principal=SYSTEM)
    assert fin.get_run(agent, world.pirate_v2.id).adapter is None  # the run stays, without it


def test_the_adapter_travels_with_the_charx_export_and_imports_back(
    finetune_world: FinetuneWorld,
) -> None:
    world, svc = finetune_world, finetune_world.services
    name = world.robot_v1.adapter_name
    svc.finetune.activate(world.robot.id, name, principal=SYSTEM)
    exported = svc.agents.export_card(world.robot.id, "charx").content
    with zipfile.ZipFile(io.BytesIO(exported)) as archive:
        entries = set(archive.namelist())
    assert {f"{CHARX_FOLDER}adapter_model.safetensors", f"{CHARX_FOLDER}adapter_config.json"} <= (
        entries
    )
    assert svc.agents.export_card(world.robot.id, "json").content.find(b"safetensors") == -1

    copy = svc.agents.import_card("unit7.charx", exported, principal=SYSTEM)
    assert copy.adapter is not None and copy.adapter != name  # a new, unique folder
    [version] = svc.finetune.list_adapters(copy.id)
    assert (version.source, version.active, version.compatible) == ("imported", True, True)
    original = svc.settings.adapters_dir / name / "adapter_model.safetensors"
    imported = svc.settings.adapters_dir / copy.adapter / "adapter_model.safetensors"
    assert imported.read_bytes() == original.read_bytes()
    assert not any(
        p.name.startswith("anima") for p in (svc.settings.agents_dir / copy.id).rglob("*")
    )
    assert world.reply(svc, copy.id) == world.reply(svc, world.robot.id)

    svc.agents.delete_agent(copy.id, principal=SYSTEM)  # the agent's adapters go with it
    assert not (svc.settings.adapters_dir / copy.adapter).exists()
    assert (svc.settings.adapters_dir / name).is_dir()


# ----- bad input: clear errors, nothing stored changes ----------------------------------------
def test_an_adapter_of_another_base_model_is_refused_and_nothing_changes(
    finetune_world: FinetuneWorld, tmp_path: Path
) -> None:
    from transformers import AutoTokenizer

    world, svc = finetune_world, finetune_world.services
    name = world.pirate_v1.adapter_name
    tokenizer = AutoTokenizer.from_pretrained(resolve_model(svc.settings).path)
    tiny = svc.settings.models_dir / "tiny-other"
    if not tiny.exists():
        save_tiny_llama(tiny, tokenizer)
    other = svc.agents.create_agent(
        {**PIRATE, "name": "Other Base", "model": "tiny-other"}, principal=SYSTEM
    )
    before = _snapshot(svc.settings.adapters_dir)

    with pytest.raises(NotFoundError):
        svc.finetune.activate(other.id, name, principal=SYSTEM)  # not this agent's version at all
    # The agent's own adapter, trained on the bundled model, after a switch of base model:
    svc.finetune.activate(world.pirate.id, name, principal=SYSTEM)
    svc.agents.update_agent(world.pirate.id, {"model": "tiny-other"}, principal=SYSTEM)
    try:
        with pytest.raises(AdapterMismatchError, match="trained on the base model") as caught:
            svc.finetune.activate(world.pirate.id, name, principal=SYSTEM)
        assert caught.value.status == 422 and "tiny-other" in caught.value.message
        [listed] = [a for a in svc.finetune.list_adapters(world.pirate.id) if a.name == name]
        assert listed.compatible is False
        with pytest.raises(AdapterMismatchError):  # and the serving layer will not load it
            world.reply(svc, world.pirate.id)
    finally:
        svc.agents.update_agent(world.pirate.id, {"model": None}, principal=SYSTEM)
    assert _snapshot(svc.settings.adapters_dir) == before
    svc.agents.delete_agent(other.id, principal=SYSTEM)


def test_a_charx_with_a_broken_or_foreign_adapter(finetune_world: FinetuneWorld) -> None:
    world, svc = finetune_world, finetune_world.services
    svc.finetune.activate(world.robot.id, world.robot_v1.adapter_name, principal=SYSTEM)
    exported = svc.agents.export_card(world.robot.id, "charx").content
    agents_before = len(svc.agents.list_agents())
    adapters_before = sorted(p.name for p in svc.settings.adapters_dir.iterdir())

    def rewrite(path: str, blob: bytes) -> bytes:
        out = io.BytesIO()
        with zipfile.ZipFile(io.BytesIO(exported)) as src, zipfile.ZipFile(out, "w") as dst:
            for info in src.infolist():
                dst.writestr(info, blob if info.filename == path else src.read(info))
        return out.getvalue()

    broken = rewrite(f"{CHARX_FOLDER}adapter_model.safetensors", b"not safetensors")
    with pytest.raises(CardFormatError, match="adapter weights cannot be read"):
        svc.agents.import_card("broken.charx", broken, principal=SYSTEM)
    assert len(svc.agents.list_agents()) == agents_before
    assert sorted(p.name for p in svc.settings.adapters_dir.iterdir()) == adapters_before

    meta = json.loads(
        (svc.settings.adapters_dir / world.robot_v1.adapter_name / ADAPTER_META).read_text()
    )
    meta.update(base_model="org/some-7b-model", base_fingerprint={"arch": "x", "weights": "y"})
    foreign = rewrite(f"{CHARX_FOLDER}{ADAPTER_META}", json.dumps(meta).encode())
    # The card comes in...
    copy = svc.agents.import_card("foreign.charx", foreign, principal=SYSTEM)
    [version] = svc.finetune.list_adapters(copy.id)
    assert copy.adapter is None and version.active is False and version.compatible is False
    with pytest.raises(AdapterMismatchError, match="org/some-7b-model"):  # ...its adapter idles
        svc.finetune.activate(copy.id, version.name, principal=SYSTEM)
    svc.agents.delete_agent(copy.id, principal=SYSTEM)


def test_too_few_examples_or_a_bad_chat_file_start_nothing(finetune_world: FinetuneWorld) -> None:
    from agents.finetune.data import UploadedChat
    from core.errors import ChatFileError, NotEnoughExamplesError

    svc = finetune_world.services
    thin = svc.agents.create_agent(
        {"name": "Thin", "first_mes": "Hi.", "mes_example": ""}, principal=SYSTEM
    )
    with pytest.raises(NotEnoughExamplesError, match="at least 8 dialogues"):
        svc.finetune.start(thin.id, principal=SYSTEM)
    with pytest.raises(ChatFileError, match=r"bad\.jsonl line 1"):
        svc.finetune.start(thin.id, [UploadedChat("bad.jsonl", b"{oops")], principal=SYSTEM)
    assert svc.finetune.list_runs(thin.id) == []
    assert not (svc.settings.data_dir / "finetune" / thin.id).exists()
    assert svc.jobs.list(target_type="agent", target_id=thin.id, principal=SYSTEM) == []
    svc.agents.delete_agent(thin.id, principal=SYSTEM)


def test_a_second_run_waits_its_turn_and_a_cancelled_run_publishes_nothing(
    finetune_world: FinetuneWorld,
) -> None:
    svc = finetune_world.services
    agent = svc.agents.create_agent(
        {"name": "Unit Eight", "mes_example": robot_examples(9), "first_mes": "BEEP."},
        principal=SYSTEM,
    )
    long_run = TINY.model_copy(update={"max_steps": 400, "checkpoint_every": 1})
    run = svc.finetune.start(agent.id, options=long_run, principal=SYSTEM)
    with pytest.raises(ConflictError, match="already being fine-tuned"):
        svc.finetune.start(agent.id, options=TINY, principal=SYSTEM)
    checkpoints = svc.settings.data_dir / "finetune" / agent.id / run.id / "checkpoints"
    wait_until(  # trained past its first checkpoint
        lambda: latest_checkpoint(checkpoints) is not None,
        timeout=600,
        interval=0.2,
        message=lambda: f"the first checkpoint: {svc.finetune.get_run(agent.id, run.id)}",
    )
    cancelled = svc.finetune.cancel_run(agent.id, run.id, principal=SYSTEM)
    assert cancelled.stage == "cancelled"
    assert cancelled.job is not None
    job = svc.jobs.wait(cancelled.job.id, timeout=120, principal=SYSTEM)
    assert job.status == "cancelled"
    wait_until(  # the step that was running finishes, then the run cleans up
        lambda: not checkpoints.exists(),
        timeout=120,
        interval=0.2,
        message="the cancelled run's checkpoints to be removed",
    )
    view = svc.finetune.get_run(agent.id, run.id)
    assert view.stage == "cancelled" and view.adapter is None
    assert 1 <= len(view.metrics.loss) < 400
    assert not (svc.settings.adapters_dir / run.adapter_name).exists()
    with svc.db.session() as s:
        assert s.get(AdapterRecord, run.adapter_name) is None
    with pytest.raises(ConflictError):
        svc.finetune.cancel_run(agent.id, run.id, principal=SYSTEM)
    svc.agents.delete_agent(agent.id, principal=SYSTEM)
    assert not (svc.settings.data_dir / "finetune" / agent.id).exists()
    svc.jobs.close()  # hand the job runtime back (see finetune_world)
