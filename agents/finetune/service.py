"""Fine-tuning an agent: start a run, follow it, judge it, and manage the adapter versions.

A run is a durable job (``agents.finetune.jobs``) in five checkpointed steps: prepare the
data, train (resuming from the last checkpoint after a crash), evaluate before and after,
publish the adapter folder, done. The creator then sees held-out perplexity and the style
score of the base model and of the adapter, with a few replies of each, and activates the new
version or discards it. Activation is nothing more than the agent's ``adapter`` field naming
the version's folder: the serving layer reads that field on every reply, so a new version
goes live with no reload, and the previous one can be rolled back to the same way.

Every method that changes an agent or its adapters takes the agent id first and the caller
(``principal``), and asks the owner check before anything else; reading runs and versions is
open. The UI and the API call these methods and nothing else.

The parts: ``store`` (rows, folders, views), ``versions`` (adapter versions and the CHARX),
``pipeline`` (the training job); this module starts, lists and cancels runs.
"""

from __future__ import annotations

import json
import logging
import shutil
import uuid
from collections.abc import Sequence

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from agents.finetune import registry
from agents.finetune.data import UploadedChat, collect, gather, not_enough, summarize
from agents.finetune.pipeline import TrainingPipeline
from agents.finetune.records import FinetuneRunRecord
from agents.finetune.schema import DataSummary, FinetuneSettings, RunMetrics, RunView
from agents.finetune.store import DATA_FILE, JOB_KIND, UNFINISHED_STAGES
from agents.finetune.versions import AdapterVersions
from core.errors import ConflictError, UploadTooLargeError, ValidationError
from core.files import atomic_write
from core.principal import SYSTEM, Principal

log = logging.getLogger(__name__)


class FinetuneService(AdapterVersions, TrainingPipeline):
    """What the API and the studio call; the job kind calls ``run_job``."""

    # ----- data -------------------------------------------------------------------------------
    def preview(
        self,
        agent_id: str,
        chats: Sequence[UploadedChat] = (),
        options: FinetuneSettings | None = None,
    ) -> DataSummary:
        """What a run would train on, without starting it (too little data is not an error
        here: the summary says how many dialogues are needed). Changes nothing: open."""
        options = options or FinetuneSettings()
        card = self.agents.get_card(agent_id)
        self._check_chats(chats)
        dialogues = gather(card.data, chats, options)
        summary = summarize(dialogues, options, self.settings.finetune.min_examples)
        if summary.examples < summary.min_examples:
            summary.notes.append(not_enough(summary, options))
        return summary

    # ----- runs -------------------------------------------------------------------------------
    def start(
        self,
        agent_id: str,
        chats: Sequence[UploadedChat] = (),
        options: FinetuneSettings | None = None,
        *,
        principal: Principal,
    ) -> RunView:
        """Check the data, then queue the training job; 422/409 before anything is stored."""
        self.owner_check.require_owner(principal, agent_id)
        options = options or FinetuneSettings()
        agent, card = self.agents.get_with_card(agent_id)
        self._check_chats(chats)
        dialogues, summary = collect(card.data, chats, options, self.settings.finetune.min_examples)
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

    def cancel_run(self, agent_id: str, run_id: str, *, principal: Principal) -> RunView:
        """Stop a queued or running fine-tune (the current training step finishes first)."""
        self.owner_check.require_owner(principal, agent_id)
        row = self._run_row(agent_id, run_id)
        if row.job_id is None:
            raise ConflictError("this run has no job to cancel")
        self.jobs.cancel(row.job_id, reason="cancelled by the creator", principal=SYSTEM)
        if row.stage in UNFINISHED_STAGES:
            self._update_run(run_id, stage="cancelled")
        return self.get_run(agent_id, run_id)

    def _check_chats(self, chats: Sequence[UploadedChat]) -> None:
        limit = self.settings.finetune.max_chat_files
        if len(chats) > limit:
            raise ValidationError(
                f"{len(chats)} chat files; one fine-tune takes at most {limit} "
                "(ANIMA_FINETUNE_MAX_CHAT_FILES)"
            )
        for chat in chats:
            if len(chat.content) > self.settings.server.max_upload_bytes:
                raise UploadTooLargeError(
                    f"{chat.filename} is {len(chat.content) / 1e6:.1f} MB; the limit is "
                    f"{self.settings.server.max_upload_bytes / 1e6:.1f} MB (ANIMA_MAX_UPLOAD_MB)"
                )


__all__ = ["DATA_FILE", "JOB_KIND", "UNFINISHED_STAGES", "FinetuneService"]
