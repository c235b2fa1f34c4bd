"""The fine-tune tables and folders: runs, adapter versions, and how each is shown.

Shared by the service's parts (``versions``: adapter management; ``pipeline``: the training
job; ``service``: starting and following runs). Nothing here checks who calls: the public
methods that use it do.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from agents.finetune.records import AdapterActivationRecord, AdapterRecord, FinetuneRunRecord
from agents.finetune.schema import (
    AdapterView,
    DataSummary,
    EvalReport,
    FinetuneSettings,
    RunMetrics,
    RunView,
)
from agents.llm.adapters import adapter_matches, base_fingerprint, model_ref
from agents.llm.connections import CONN_PREFIX
from agents.llm.factory import backend_traits
from agents.llm.pool import check_model_ref
from agents.records import utcnow
from agents.service import AgentService, AgentView
from core.db import Database
from core.errors import NotFoundError
from core.files import is_safe_id, safe_join
from core.jobs import FINISHED, JobService, TargetGone
from core.principal import SYSTEM, OwnerCheck
from core.settings import Settings

log = logging.getLogger(__name__)

JOB_KIND = "agents.finetune"
DATA_FILE = "data.json"
UNFINISHED_STAGES = ("queued", "preparing", "training", "evaluating", "publishing")


class RunStore:
    """Rows and folders of runs and adapter versions, and the base model they are checked on."""

    def __init__(
        self,
        settings: Settings,
        db: Database,
        agents: AgentService,
        jobs: JobService,
        owner_check: OwnerCheck,
    ) -> None:
        self.settings = settings
        self.db = db
        self.agents = agents
        self.jobs = jobs
        self.owner_check = owner_check

    def _base_ref(self, agent: AgentView) -> str:
        """The base model an agent's adapter is trained on and checked against.

        With a remote backend the agent's ``model`` names what the server serves; training
        then uses the local copy of that base model, ``ANIMA_LLM_MODEL``. So does a model
        connection's model (``conn:``): its weights may not be on this machine at all.
        """
        if not backend_traits(self.settings).in_process or _is_connection(agent.model):
            return model_ref(self.settings)
        return model_ref(self.settings, agent.model)

    def _base_settings(self, agent: AgentView) -> Settings:
        model = agent.model if backend_traits(self.settings).in_process else None
        if model is None or _is_connection(model):
            return self.settings
        check_model_ref(model)
        local = self.settings.models_dir / model
        if not model.startswith("bundled:") and local.is_dir():
            model = str(safe_join(self.settings.models_dir, model))
        return self.settings.model_copy(update={"llm_model": model, "llm_gguf_file": None})

    def _fingerprint(self, agent: AgentView) -> dict[str, Any] | None:
        return base_fingerprint(self._base_settings(agent))

    def _adapter_view(
        self, row: AdapterRecord, agent: AgentView, cache: dict[str, Any]
    ) -> AdapterView:
        ref = self._base_ref(agent)
        compatible = row.base_model == ref
        if not compatible:
            if "fingerprint" not in cache:
                cache["fingerprint"] = self._fingerprint(agent)
            meta = {"base_model": row.base_model, "base_fingerprint": row.base_fingerprint}
            compatible = adapter_matches(meta, ref, cache["fingerprint"])
        return AdapterView(
            name=row.name,
            agent_id=row.agent_id,
            version=row.version,
            source=row.source,  # type: ignore[arg-type]
            run_id=row.run_id,
            base_model=row.base_model,
            base_model_name=row.base_model_name,
            compatible=compatible,
            active=agent.adapter == row.name,
            size_bytes=row.size_bytes,
            eval=EvalReport.model_validate(row.eval) if row.eval else None,
            created_at=row.created_at,
        )

    def _run_view(self, row: FinetuneRunRecord) -> RunView:
        job = None
        if row.job_id:
            try:
                job = self.jobs.get(row.job_id, principal=SYSTEM)
            except NotFoundError:
                job = None
        stage = row.stage
        if job is not None and job.status in FINISHED and stage in UNFINISHED_STAGES:
            stage = {"cancelled": "cancelled", "failed": "failed"}.get(job.status, stage)
        adapter = None
        with self.db.session() as s:
            record = s.get(AdapterRecord, row.adapter_name)
        if record is not None:
            agent = self.agents.get_agent(row.agent_id)
            adapter = self._adapter_view(record, agent, {})
        return RunView(
            id=row.id,
            agent_id=row.agent_id,
            version=row.version,
            adapter_name=row.adapter_name,
            stage=stage,  # type: ignore[arg-type]
            base_model=row.base_model,
            settings=FinetuneSettings.model_validate(row.settings),
            data=DataSummary.model_validate(row.data_summary),
            metrics=RunMetrics.model_validate(row.metrics or {}),
            job=job,
            adapter=adapter,
            created_at=row.created_at,
            updated_at=row.updated_at,
        )

    def _run_row(self, agent_id: str, run_id: str) -> FinetuneRunRecord:
        self.agents.get_agent(agent_id)
        with self.db.session() as s:
            row = s.get(FinetuneRunRecord, run_id) if is_safe_id(run_id) else None
        if row is None or row.agent_id != agent_id:
            raise NotFoundError(f"no fine-tune run {run_id!r} for this agent")
        return row

    def _job_row(self, run_id: str) -> FinetuneRunRecord:
        with self.db.session() as s:
            row = s.get(FinetuneRunRecord, run_id)
        if row is None:
            raise TargetGone("the run was deleted with its agent")
        return row

    def _adapter_row(self, agent_id: str, name: str) -> AdapterRecord:
        with self.db.session() as s:
            row = s.get(AdapterRecord, name)
        if row is None or row.agent_id != agent_id:
            raise NotFoundError(f"agent has no adapter version named {name!r}")
        return row

    def _adapter_dir(self, row: FinetuneRunRecord) -> Path:
        """Where the run's adapter is: still in the run folder, or already published."""
        built = self._run_dir(row.agent_id, row.id) / "adapter"
        return built if built.is_dir() else self.settings.adapters_dir / row.adapter_name

    def _unfinished_run(self, agent_id: str) -> FinetuneRunRecord | None:
        with self.db.session() as s:
            rows = s.scalars(
                select(FinetuneRunRecord).where(
                    FinetuneRunRecord.agent_id == agent_id,
                    FinetuneRunRecord.stage.in_(UNFINISHED_STAGES),
                )
            ).all()
        for row in rows:
            view = self._run_view(row)
            if view.stage in UNFINISHED_STAGES and not (view.job and view.job.finished):
                return row
        return None

    def _next_version(self, session: Any, agent_id: str) -> int:
        runs = session.scalar(
            select(func.max(FinetuneRunRecord.version)).where(
                FinetuneRunRecord.agent_id == agent_id
            )
        )
        adapters = session.scalar(
            select(func.max(AdapterRecord.version)).where(AdapterRecord.agent_id == agent_id)
        )
        return max(runs or 0, adapters or 0) + 1

    def _push_activation(self, agent_id: str, name: str | None) -> None:
        with self.db.session() as s:
            s.add(AdapterActivationRecord(agent_id=agent_id, adapter_name=name))

    def _stage(self, run_id: str, stage: str) -> None:
        self._update_run(run_id, stage=stage)

    def _update_run(self, run_id: str, **values: Any) -> None:
        with self.db.session() as s:
            row = s.get(FinetuneRunRecord, run_id)
            if row is None:
                return
            for key, value in values.items():
                setattr(row, key, value)
            row.updated_at = utcnow()

    def _merge_metrics(self, run_id: str, **parts: Any) -> None:
        with self.db.session() as s:
            row = s.get(FinetuneRunRecord, run_id)
            if row is None:
                return
            row.metrics = {**(row.metrics or {}), **parts}
            row.updated_at = utcnow()

    def _runs_root(self) -> Path:
        return self.settings.data_dir / "finetune"

    def _run_dir(self, agent_id: str, run_id: str) -> Path:
        return safe_join(self._runs_root(), f"{agent_id}/{run_id}")


def _is_connection(model: str | None) -> bool:
    return bool(model) and model.startswith(CONN_PREFIX)  # type: ignore[union-attr]
