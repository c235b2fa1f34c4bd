"""The fine-tune job: prepare the data, train, evaluate before and after, publish.

Each step is checkpointed by the jobs layer (``ctx.step``): a run interrupted by a crash
resumes at the step it was in, and training resumes from its last checkpoint.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

from sqlalchemy.exc import IntegrityError

from agents.finetune import registry
from agents.finetune.data import Dialogue, Renderer, split
from agents.finetune.evaluate import evaluate_adapter
from agents.finetune.records import AdapterRecord, FinetuneRunRecord
from agents.finetune.schema import DataSummary, FinetuneSettings, LossPoint, RunMetrics
from agents.finetune.store import DATA_FILE, RunStore
from agents.finetune.trainer import import_ml_stack, train_adapter
from agents.llm.adapters import fingerprint_folder
from agents.llm.model_source import display_name, resolve_model
from agents.records import utcnow
from core.errors import NotFoundError, ValidationError
from core.jobs import JobCancelled, JobContext, TargetGone

log = logging.getLogger(__name__)


class TrainingPipeline(RunStore):
    """The steps of one run, called by the job kind in ``agents.finetune.jobs``."""

    # ----- the job (called by agents.finetune.jobs) ----------------------------------------------
    def run_job(self, ctx: JobContext, run_id: str) -> dict[str, Any]:
        row = self._job_row(run_id)
        import_ml_stack()
        try:
            self._stage(run_id, "preparing")
            ctx.progress(0, 0, "preparing the training data")
            plan = ctx.step("prepare", self._prepare, run_id)
            ctx.raise_if_cancelled()
            self._stage(run_id, "training")
            ctx.progress(0, plan["total_steps"], "training")
            stats = ctx.step("train", self._train, ctx, run_id)
            if stats is None:
                raise JobCancelled(f"job {ctx.job_id} was cancelled")
            ctx.raise_if_cancelled()
            self._stage(run_id, "evaluating")
            ctx.progress(stats["steps"], stats["steps"], "evaluating before and after")
            report = ctx.step("evaluate", self._evaluate, run_id)
            ctx.raise_if_cancelled()
            self._stage(run_id, "publishing")
            name = ctx.step("publish", self._publish, run_id)
        except BaseException as exc:
            if isinstance(exc, JobCancelled | TargetGone) or self._cancelled(ctx):
                self._stage(run_id, "cancelled")
                self._clean(row.agent_id, run_id)
            elif isinstance(exc, Exception) and self.jobs.executing:
                # (an executor shutting down under the job parks it: it resumes on restart)
                self._update_run(run_id, stage="failed", error=f"{type(exc).__name__}: {exc}")
                self._clean(row.agent_id, run_id)
            raise
        self._stage(run_id, "ready")
        self._clean(row.agent_id, run_id)
        return {
            "run_id": run_id,
            "adapter": name,
            "perplexity_before": report["before"]["perplexity"],
            "perplexity_after": report["after"]["perplexity"],
            "style_before": report["before"]["style"],
            "style_after": report["after"]["style"],
        }

    @staticmethod
    def _cancelled(ctx: JobContext) -> bool:
        try:
            ctx.raise_if_cancelled()
        except JobCancelled:
            return True
        return False

    def _prepare(self, run_id: str) -> dict[str, Any]:
        row = self._job_row(run_id)
        options = FinetuneSettings.model_validate(row.settings)
        _, renderer, train, held = self._render(row, options)
        summary = DataSummary.model_validate(row.data_summary)
        summary.notes = list(dict.fromkeys([*summary.notes, *renderer.notes]))
        summary.train, summary.held_out = len(train), len(held)
        self._update_run(run_id, data_summary=summary.model_dump(mode="json"))
        if not train or not held:
            raise ValidationError("after rendering, no dialogue is left to train or evaluate on")
        return {"total_steps": options.total_steps(len(train)), "train": len(train)}

    def _train(self, ctx: JobContext, run_id: str) -> dict[str, Any] | None:
        row = self._job_row(run_id)
        options = FinetuneSettings.model_validate(row.settings)
        source, _, train, _ = self._render(row, options)
        hooks = _JobHooks(self, ctx, run_id)
        stats = train_adapter(
            Path(source),
            train,
            options,
            self._run_dir(row.agent_id, run_id) / "checkpoints",
            self._run_dir(row.agent_id, run_id) / "adapter",
            hooks,
            self.settings,
            row.base_model,
        )
        if stats is None:
            return None
        self._merge_metrics(run_id, training=stats.model_dump(mode="json"))
        return stats.model_dump(mode="json")

    def _evaluate(self, run_id: str) -> dict[str, Any]:
        row = self._job_row(run_id)
        options = FinetuneSettings.model_validate(row.settings)
        source, renderer, _, held_samples = self._render(row, options)
        train, held = split(self._dialogues(row), options.holdout_fraction, options.seed)
        agent = self.agents.get_agent(row.agent_id)
        report = evaluate_adapter(
            Path(source),
            self._adapter_dir(row),
            renderer,
            train,
            held,
            held_samples,
            options,
            agent.generation.repetition_penalty,
            self.settings,
        )
        self._merge_metrics(run_id, eval=report.model_dump(mode="json"))
        return report.model_dump(mode="json")

    def _publish(self, run_id: str) -> str:
        row = self._job_row(run_id)
        agent = self.agents.get_agent(row.agent_id)
        metrics = RunMetrics.model_validate(row.metrics or {})
        root = self.settings.adapters_dir
        name = row.adapter_name
        built = self._adapter_dir(row)
        source = resolve_model(self._base_settings(agent)).path
        fingerprint = fingerprint_folder(Path(source)) if Path(source).is_dir() else None
        meta = {
            "format": registry.META_FORMAT,
            "name": name,
            "agent_id": row.agent_id,
            "agent_name": agent.name,
            "version": row.version,
            "source": "trained",
            "run_id": run_id,
            "base_model": row.base_model,
            "base_model_name": display_name(row.base_model),
            "base_fingerprint": fingerprint,
            "created_at": utcnow().isoformat(),
            "settings": row.settings,
            "eval": metrics.eval.model_dump(mode="json") if metrics.eval else None,
            "training": metrics.training.model_dump(mode="json") if metrics.training else None,
        }
        folder = registry.publish(built, root, name, meta) if built.is_dir() else root / name
        if not folder.is_dir():
            raise ValidationError(f"the trained adapter of run {run_id} is missing")
        with self.db.session() as s:
            if s.get(AdapterRecord, name) is None:
                try:
                    s.add(
                        AdapterRecord(
                            name=name,
                            agent_id=row.agent_id,
                            version=row.version,
                            source="trained",
                            run_id=run_id,
                            base_model=row.base_model,
                            base_model_name=display_name(row.base_model)[:200],
                            base_fingerprint=fingerprint,
                            eval=meta["eval"],
                            size_bytes=registry.folder_size(folder),
                        )
                    )
                    s.flush()
                except IntegrityError as exc:  # the agent was deleted meanwhile
                    registry.remove(root, name)
                    raise TargetGone("the agent was deleted") from exc
        return name

    def _render(
        self, row: FinetuneRunRecord, options: FinetuneSettings
    ) -> tuple[str, Renderer, list[Any], list[Any]]:
        """The base model's folder, and the run's dialogues tokenised (train, held out)."""
        from transformers import AutoTokenizer

        agent, card = self.agents.get_with_card(row.agent_id)
        source = resolve_model(self._base_settings(agent)).path
        tokenizer = AutoTokenizer.from_pretrained(source)
        renderer = Renderer(tokenizer, card.data, options)
        train, held = split(self._dialogues(row), options.holdout_fraction, options.seed)
        return source, renderer, renderer.render_all(train), renderer.render_all(held)

    def _dialogues(self, row: FinetuneRunRecord) -> list[Dialogue]:
        path = self._run_dir(row.agent_id, row.id) / DATA_FILE
        try:
            payload = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise TargetGone("the run's data is gone (the agent was deleted)") from exc
        return [Dialogue.model_validate(d) for d in payload["dialogues"]]

    def _clean(self, agent_id: str, run_id: str) -> None:
        """Drop a finished run's checkpoints and unpublished adapter (its data stays).

        If the agent was deleted while the run trained, a checkpoint may have been written
        after the agent's files were removed: then the whole folder goes.
        """
        try:
            self.agents.get_agent(agent_id)
        except NotFoundError:
            shutil.rmtree(self._runs_root() / agent_id, ignore_errors=True)
            return
        folder = self._run_dir(agent_id, run_id)
        for part in ("checkpoints", "adapter", ".adapter.staging"):
            shutil.rmtree(folder / part, ignore_errors=True)


class _JobHooks:
    """Relays the trainer's progress and loss into the job and the run; reports cancels."""

    def __init__(self, service: TrainingPipeline, ctx: JobContext, run_id: str) -> None:
        self.service = service
        self.ctx = ctx
        self.run_id = run_id

    def on_start(self, total_steps: int, resumed_from: int) -> None:
        with self.service.db.session() as s:
            row = s.get(FinetuneRunRecord, self.run_id)
            if row is None:
                return
            metrics = RunMetrics.model_validate(row.metrics or {})
            metrics.loss = [p for p in metrics.loss if p.step <= resumed_from]
            if resumed_from:
                metrics.resumes.append(resumed_from)
            row.metrics = metrics.model_dump(mode="json")
        message = f"resumed from step {resumed_from}" if resumed_from else "training"
        self.ctx.progress(resumed_from, total_steps, message)

    def on_log(self, point: LossPoint, total_steps: int) -> None:
        with self.service.db.session() as s:
            row = s.get(FinetuneRunRecord, self.run_id)
            if row is None:
                return
            metrics = dict(row.metrics or {})
            metrics["loss"] = [*metrics.get("loss", []), point.model_dump(mode="json")]
            row.metrics = metrics
            row.updated_at = utcnow()
        self.ctx.progress(
            point.step,
            total_steps,
            f"training: step {point.step} of {total_steps}, loss {point.loss:.3f}",
        )

    def should_stop(self) -> bool:
        return TrainingPipeline._cancelled(self.ctx)
