"""A fine-tune whose worker is killed with SIGKILL resumes from its last checkpoint.

The worker is a real ``python app.py worker`` subprocess; the test process only enqueues, as a
web process does when training runs on separate machines.
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from agents.finetune.trainer import CHECKPOINT_PREFIX, latest_checkpoint
from container import build_services
from core.principal import SYSTEM
from core.settings import Settings
from tests.agents.finetune_world import PIRATE, TINY
from tests.core.test_jobs_durability import Workers
from tests.waiting import wait_until

pytestmark = pytest.mark.model


def test_a_killed_training_resumes_from_its_last_checkpoint(
    tmp_path: Path, model_cache_dir: Path
) -> None:
    settings = Settings(
        data_dir=tmp_path / "data",
        model_cache_dir=model_cache_dir,
        jobs_run_in_app=False,
        llm_preload=False,
    )
    services = build_services(settings)
    workers = Workers(tmp_path, None)
    workers.env["ANIMA_MODEL_CACHE_DIR"] = str(model_cache_dir)
    try:
        agent = services.agents.create_agent(PIRATE, principal=SYSTEM)
        workers.start("trainer-1")
        options = TINY.model_copy(update={"max_steps": 8, "checkpoint_every": 2, "eval_samples": 1})
        run = services.finetune.start(agent.id, options=options, principal=SYSTEM)
        assert run.job is not None
        checkpoints = settings.data_dir / "finetune" / agent.id / run.id / "checkpoints"

        def trained_past_a_checkpoint() -> bool:
            steps = [p.step for p in services.finetune.run_metrics(agent.id, run.id).loss]
            return latest_checkpoint(checkpoints) is not None and bool(steps) and max(steps) >= 3

        wait_until(
            trained_past_a_checkpoint, timeout=600, message="training past its first checkpoint"
        )
        workers.procs[0].send_signal(signal.SIGKILL)
        workers.procs[0].wait(timeout=30)
        assert services.jobs.get(run.job.id, principal=SYSTEM).status == "running"
        last = latest_checkpoint(checkpoints)
        assert last is not None
        resume_step = int(last.name.removeprefix(CHECKPOINT_PREFIX))
        assert resume_step < 8

        workers.start("trainer-1")  # the same executor comes back and recovers its job
        job = services.jobs.wait(run.job.id, timeout=900, principal=SYSTEM)
        assert job.status == "succeeded", job
        view = services.finetune.get_run(agent.id, run.id)
        assert view.metrics.resumes == [resume_step]
        assert view.metrics.training is not None
        assert view.metrics.training.resumed_from_step == resume_step
        assert view.metrics.training.steps == 8
        # Each step's loss once: what ran after the checkpoint and was lost is not doubled.
        assert [p.step for p in view.metrics.loss] == list(range(1, 9))
        assert view.stage == "ready" and view.adapter is not None
        assert (settings.adapters_dir / view.adapter.name / "adapter_model.safetensors").is_file()
        assert not checkpoints.exists()
    finally:
        workers.stop_all()
        services.close()
