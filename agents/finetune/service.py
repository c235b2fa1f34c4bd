"""Fine-tuning an agent: start a run, follow it, judge it, and manage the adapter versions.

A run is a durable job (``agents.finetune.jobs``) in five checkpointed steps: prepare the
data, train (resuming from the last checkpoint after a crash), evaluate before and after,
publish the adapter folder, done. The creator then sees held-out perplexity and the style
score of the base model and of the adapter, with a few replies of each, and activates the new
version or discards it. Activation is nothing more than the agent's ``adapter`` field naming
the version's folder: the serving layer reads that field on every reply, so a new version
goes live with no reload, and the previous one can be rolled back to the same way.

Every method that changes an agent or its adapters takes the agent id first and goes through
``AgentService`` for the agent itself, so an ownership check there covers all of them. The UI
and the API call these methods and nothing else.
"""

from __future__ import annotations

import json
import logging
import shutil
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError

from agents.finetune import registry
from agents.finetune.data import (
    Dialogue,
    Renderer,
    UploadedChat,
    collect,
    gather,
    not_enough,
    split,
    summarize,
)
from agents.finetune.evaluate import evaluate_adapter
from agents.finetune.records import AdapterActivationRecord, AdapterRecord, FinetuneRunRecord
from agents.finetune.schema import (
    AdapterView,
    DataSummary,
    EvalReport,
    FinetuneSettings,
    LossPoint,
    RunMetrics,
    RunView,
)
from agents.finetune.trainer import import_ml_stack, train_adapter
from agents.llm.adapters import (
    ADAPTER_META,
    adapter_matches,
    base_fingerprint,
    fingerprint_folder,
    mismatch_message,
    model_ref,
)
from agents.llm.model_source import display_name, resolve_model
from agents.llm.pool import check_model_ref
from agents.records import utcnow
from agents.service import AgentService, AgentView
from core.db import Database
from core.errors import (
    AdapterMismatchError,
    ConflictError,
    NotFoundError,
    UploadTooLargeError,
    ValidationError,
)
from core.files import atomic_write, is_safe_id, safe_join
from core.jobs import FINISHED, JobCancelled, JobContext, JobService, TargetGone
from core.principal import SYSTEM
from core.settings import Settings

log = logging.getLogger(__name__)

JOB_KIND = "agents.finetune"
DATA_FILE = "data.json"
UNFINISHED_STAGES = ("queued", "preparing", "training", "evaluating", "publishing")


class FinetuneService:
    def __init__(
        self, settings: Settings, db: Database, agents: AgentService, jobs: JobService
    ) -> None:
        self.settings = settings
        self.db = db
        self.agents = agents
        self.jobs = jobs

    # ----- data -------------------------------------------------------------------------------
    def preview(
        self,
        agent_id: str,
        chats: Sequence[UploadedChat] = (),
        options: FinetuneSettings | None = None,
    ) -> DataSummary:
        """What a run would train on, without starting it (too little data is not an error
        here: the summary says how many dialogues are needed)."""
        options = options or FinetuneSettings()
        card = self.agents.get_card(agent_id)
        self._check_chats(chats)
        dialogues = gather(card.data, chats, options)
        summary = summarize(dialogues, options, self.settings.finetune_min_examples)
        if summary.examples < summary.min_examples:
            summary.notes.append(not_enough(summary, options))
        return summary

    # ----- runs -------------------------------------------------------------------------------
    def start(
        self,
        agent_id: str,
        chats: Sequence[UploadedChat] = (),
        options: FinetuneSettings | None = None,
    ) -> RunView:
        """Check the data, then queue the training job; 422/409 before anything is stored."""
        options = options or FinetuneSettings()
        agent, card = self.agents.get_with_card(agent_id)
        self._check_chats(chats)
        dialogues, summary = collect(card.data, chats, options, self.settings.finetune_min_examples)
        if self._unfinished_run(agent_id) is not None:
            raise ConflictError(
                f"agent {agent.name} is already being fine-tuned; wait for that run or cancel it"
            )
        base = self._base_ref(agent)
        run_id = uuid.uuid4().hex
        folder = self._run_dir(agent_id, run_id)
        payload = {"dialogues": [d.model_dump(mode="json") for d in dialogues]}
        atomic_write(folder / DATA_FILE, json.dumps(payload, ensure_ascii=False).encode("utf-8"))
        try:
            with self.db.session() as s:
                version = self._next_version(s, agent_id)
                s.add(
                    FinetuneRunRecord(
                        id=run_id,
                        agent_id=agent_id,
                        version=version,
                        adapter_name=registry.adapter_name(agent.name, version, run_id),
                        stage="queued",
                        base_model=base,
                        settings=options.model_dump(mode="json"),
                        data_summary=summary.model_dump(mode="json"),
                        metrics=RunMetrics().model_dump(mode="json"),
                    )
                )
        except IntegrityError as exc:  # another run took this version at the same moment
            shutil.rmtree(folder, ignore_errors=True)
            raise ConflictError(f"agent {agent.name} is already being fine-tuned") from exc
        try:
            job = self.jobs.submit(
                JOB_KIND,
                {"run_id": run_id},
                target_type="agent",
                target_id=agent_id,
                idempotency_key=f"finetune:{run_id}",
            )
        except BaseException:
            with self.db.session() as s:
                s.execute(delete(FinetuneRunRecord).where(FinetuneRunRecord.id == run_id))
            shutil.rmtree(folder, ignore_errors=True)
            raise
        self._update_run(run_id, job_id=job.id)
        return self.get_run(agent_id, run_id)

    def list_runs(self, agent_id: str) -> list[RunView]:
        self.agents.get_agent(agent_id)
        with self.db.session() as s:
            rows = s.scalars(
                select(FinetuneRunRecord)
                .where(FinetuneRunRecord.agent_id == agent_id)
                .order_by(FinetuneRunRecord.version.desc())
            ).all()
        return [self._run_view(r) for r in rows]

    def get_run(self, agent_id: str, run_id: str) -> RunView:
        return self._run_view(self._run_row(agent_id, run_id))

    def run_metrics(self, agent_id: str, run_id: str) -> RunMetrics:
        return RunMetrics.model_validate(self._run_row(agent_id, run_id).metrics or {})

    def cancel_run(self, agent_id: str, run_id: str) -> RunView:
        """Stop a queued or running fine-tune (the current training step finishes first)."""
        row = self._run_row(agent_id, run_id)
        if row.job_id is None:
            raise ConflictError("this run has no job to cancel")
        self.jobs.cancel(row.job_id, reason="cancelled by the creator", principal=SYSTEM)
        if row.stage in UNFINISHED_STAGES:
            self._update_run(run_id, stage="cancelled")
        return self.get_run(agent_id, run_id)

    # ----- adapters -----------------------------------------------------------------------------
    def list_adapters(self, agent_id: str) -> list[AdapterView]:
        """The agent's adapter versions, newest first, with which is active and usable."""
        agent = self.agents.get_agent(agent_id)
        with self.db.session() as s:
            rows = s.scalars(
                select(AdapterRecord)
                .where(AdapterRecord.agent_id == agent_id)
                .order_by(AdapterRecord.version.desc())
            ).all()
        fingerprint: dict[str, Any] = {}
        return [self._adapter_view(r, agent, fingerprint) for r in rows]

    def activate(self, agent_id: str, name: str) -> AgentView:
        """Serve ``name`` for this agent from its next reply on (no reload)."""
        agent = self.agents.get_agent(agent_id)
        row = self._adapter_row(agent_id, name)
        if not (self.settings.adapters_dir / name).is_dir():
            raise ConflictError(f"the files of adapter {name} are missing; delete this version")
        ref = self._base_ref(agent)
        meta = {"base_model": row.base_model, "base_model_name": row.base_model_name}
        meta["base_fingerprint"] = row.base_fingerprint
        if row.base_model != ref and not adapter_matches(meta, ref, self._fingerprint(agent)):
            raise AdapterMismatchError(mismatch_message(name, meta, ref))
        view = self.agents.update_agent(agent_id, {"adapter": name})
        self._push_activation(agent_id, name)
        return view

    def deactivate(self, agent_id: str) -> AgentView:
        """Back to the base model (the adapter versions stay)."""
        view = self.agents.update_agent(agent_id, {"adapter": None})
        self._push_activation(agent_id, None)
        return view

    def rollback(self, agent_id: str) -> AgentView:
        """Re-activate what was active before the current adapter (the base model at the end)."""
        agent = self.agents.get_agent(agent_id)
        with self.db.session() as s:
            stack = list(
                s.scalars(
                    select(AdapterActivationRecord)
                    .where(AdapterActivationRecord.agent_id == agent_id)
                    .order_by(AdapterActivationRecord.id.desc())
                ).all()
            )
            existing = set(
                s.scalars(select(AdapterRecord.name).where(AdapterRecord.agent_id == agent_id))
            )
            while stack and (
                stack[0].adapter_name == agent.adapter
                or (stack[0].adapter_name is not None and stack[0].adapter_name not in existing)
            ):
                s.delete(stack.pop(0))
            target = stack[0].adapter_name if stack else None
        if target == agent.adapter:
            raise ConflictError("nothing to roll back to: the agent already uses the base model")
        return self.agents.update_agent(agent_id, {"adapter": target})

    def delete_adapter(self, agent_id: str, name: str) -> None:
        """Delete a version (discard a run's result); the active one must be replaced first."""
        agent = self.agents.get_agent(agent_id)
        self._adapter_row(agent_id, name)
        if agent.adapter == name:
            raise ConflictError(
                f"adapter {name} is active; roll back or activate another version first"
            )
        with self.db.session() as s:
            s.execute(delete(AdapterRecord).where(AdapterRecord.name == name))
            s.execute(
                delete(AdapterActivationRecord).where(
                    AdapterActivationRecord.agent_id == agent_id,
                    AdapterActivationRecord.adapter_name == name,
                )
            )
        registry.remove(self.settings.adapters_dir, name)

    # ----- the agent's card and lifetime (AgentAttachment) ---------------------------------------
    def export_files(self, agent_id: str) -> dict[str, bytes]:
        """The active adapter's files for the CHARX (under ``anima/adapter/``)."""
        agent = self.agents.get_agent(agent_id)
        if not agent.adapter:
            return {}
        folder = safe_join(self.settings.adapters_dir, agent.adapter)
        if not folder.is_dir():
            log.warning("agent %s names adapter %s, which is missing", agent_id, agent.adapter)
            return {}
        size = registry.folder_size(folder)
        limit = self.settings.max_upload_bytes
        if size > limit:
            raise UploadTooLargeError(
                f"the active adapter {agent.adapter} is {size / 1e6:.1f} MB; a CHARX holding it "
                f"could not be imported again (limit {limit / 1e6:.1f} MB, ANIMA_MAX_UPLOAD_MB). "
                "Export PNG or JSON (without the adapter), or use a smaller LoRA rank"
            )
        files = registry.read_files(folder)
        return {f"{registry.CHARX_FOLDER}{name}": blob for name, blob in files.items()}

    def take_import(self, files: dict[str, bytes]) -> dict[str, bytes] | None:
        found = {k: v for k, v in files.items() if k.startswith(registry.CHARX_FOLDER)}
        for key in found:
            del files[key]
        adapter = {
            key.removeprefix(registry.CHARX_FOLDER): blob
            for key, blob in found.items()
            if key.removeprefix(registry.CHARX_FOLDER) in registry.ADAPTER_FILES
        }
        if not adapter:
            return None
        registry.check_files(adapter)
        return adapter

    def attach(self, agent_id: str, staged: object) -> None:
        """Store an imported adapter as the agent's next version; activate it if it fits."""
        assert isinstance(staged, dict)
        agent = self.agents.get_agent(agent_id)
        files: dict[str, bytes] = dict(staged)
        meta = json.loads(files[ADAPTER_META]) if ADAPTER_META in files else {}
        config = json.loads(files["adapter_config.json"])
        base = str(meta.get("base_model") or config.get("base_model_name_or_path") or "unknown")
        with self.db.session() as s:
            version = self._next_version(s, agent_id)
        name = registry.adapter_name(agent.name, version)
        meta = {
            **meta,
            "format": registry.META_FORMAT,
            "name": name,
            "agent_id": agent_id,
            "version": version,
            "source": "imported",
            "imported_from": meta.get("name"),
            "base_model": base,
            "base_model_name": str(meta.get("base_model_name") or display_name(base)),
        }
        files[ADAPTER_META] = json.dumps(meta, indent=2).encode("utf-8")
        folder = registry.write_new(self.settings.adapters_dir, name, files)
        try:
            with self.db.session() as s:
                s.add(
                    AdapterRecord(
                        name=name,
                        agent_id=agent_id,
                        version=version,
                        source="imported",
                        run_id=None,
                        base_model=base[:500],
                        base_model_name=meta["base_model_name"][:200],
                        base_fingerprint=meta.get("base_fingerprint"),
                        eval=meta.get("eval"),
                        size_bytes=registry.folder_size(folder),
                    )
                )
        except BaseException:
            registry.remove(self.settings.adapters_dir, name)
            raise
        try:
            self.activate(agent_id, name)
        except AdapterMismatchError as exc:  # kept as a version; the panel says why it is idle
            log.info("imported adapter %s not activated: %s", name, exc.message)

    def agent_deleted(self, agent_id: str) -> None:
        self.jobs.cancel_for_target("agent", agent_id, "the agent was deleted")
        for name in registry.folders_of_agent(self.settings.adapters_dir, agent_id):
            registry.remove(self.settings.adapters_dir, name)
        shutil.rmtree(self._runs_root() / agent_id, ignore_errors=True)

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

    # ----- internals ---------------------------------------------------------------------------
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

    def _base_ref(self, agent: AgentView) -> str:
        """The base model an agent's adapter is trained on and checked against.

        With the ``openai`` backend the agent's ``model`` names what the remote server serves;
        training then uses the local copy of that base model, ``ANIMA_LLM_MODEL``.
        """
        if self.settings.llm_backend == "openai":
            return model_ref(self.settings)
        return model_ref(self.settings, agent.model)

    def _base_settings(self, agent: AgentView) -> Settings:
        model = None if self.settings.llm_backend == "openai" else agent.model
        if model is None:
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

    def _check_chats(self, chats: Sequence[UploadedChat]) -> None:
        limit = self.settings.finetune_max_chat_files
        if len(chats) > limit:
            raise ValidationError(
                f"{len(chats)} chat files; one fine-tune takes at most {limit} "
                "(ANIMA_FINETUNE_MAX_CHAT_FILES)"
            )
        for chat in chats:
            if len(chat.content) > self.settings.max_upload_bytes:
                raise UploadTooLargeError(
                    f"{chat.filename} is {len(chat.content) / 1e6:.1f} MB; the limit is "
                    f"{self.settings.max_upload_bytes / 1e6:.1f} MB (ANIMA_MAX_UPLOAD_MB)"
                )

    def _runs_root(self) -> Path:
        return self.settings.data_dir / "finetune"

    def _run_dir(self, agent_id: str, run_id: str) -> Path:
        return safe_join(self._runs_root(), f"{agent_id}/{run_id}")

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

    def __init__(self, service: FinetuneService, ctx: JobContext, run_id: str) -> None:
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
        return FinetuneService._cancelled(self.ctx)
