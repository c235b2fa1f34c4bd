"""Adapter versions of an agent: list, activate, roll back, delete, and carry in a CHARX.

Activation is nothing more than the agent's ``adapter`` field naming the version's folder:
the serving layer reads that field on every reply, so a new version goes live with no
reload, and the previous one can be rolled back to the same way.
"""

from __future__ import annotations

import json
import logging
import shutil
from typing import Any

from sqlalchemy import delete, select

from agents.finetune import registry
from agents.finetune.records import AdapterActivationRecord, AdapterRecord
from agents.finetune.schema import AdapterView
from agents.finetune.store import RunStore
from agents.llm.adapters import ADAPTER_META, adapter_matches, mismatch_message
from agents.llm.model_source import display_name
from agents.service import AgentView
from core.errors import AdapterMismatchError, ConflictError, UploadTooLargeError
from core.files import safe_join
from core.principal import SYSTEM, Principal

log = logging.getLogger(__name__)


class AdapterVersions(RunStore):
    """An agent's adapter versions, and the agent's side of them (``AgentAttachment``)."""

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

    def activate(self, agent_id: str, name: str, *, principal: Principal) -> AgentView:
        """Serve ``name`` for this agent from its next reply on (no reload)."""
        self.owner_check.require_owner(principal, agent_id)
        agent = self.agents.get_agent(agent_id)
        row = self._adapter_row(agent_id, name)
        if not (self.settings.adapters_dir / name).is_dir():
            raise ConflictError(f"the files of adapter {name} are missing; delete this version")
        ref = self._base_ref(agent)
        meta = {"base_model": row.base_model, "base_model_name": row.base_model_name}
        meta["base_fingerprint"] = row.base_fingerprint
        if row.base_model != ref and not adapter_matches(meta, ref, self._fingerprint(agent)):
            raise AdapterMismatchError(mismatch_message(name, meta, ref))
        view = self.agents.update_agent(agent_id, {"adapter": name}, principal=principal)
        self._push_activation(agent_id, name)
        return view

    def deactivate(self, agent_id: str, *, principal: Principal) -> AgentView:
        """Back to the base model (the adapter versions stay)."""
        view = self.agents.update_agent(agent_id, {"adapter": None}, principal=principal)
        self._push_activation(agent_id, None)
        return view

    def rollback(self, agent_id: str, *, principal: Principal) -> AgentView:
        """Re-activate what was active before the current adapter (the base model at the end)."""
        self.owner_check.require_owner(principal, agent_id)
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
        return self.agents.update_agent(agent_id, {"adapter": target}, principal=principal)

    def delete_adapter(self, agent_id: str, name: str, *, principal: Principal) -> None:
        """Delete a version (discard a run's result); the active one must be replaced first."""
        self.owner_check.require_owner(principal, agent_id)
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
        for listener in self.agents.listeners:  # e.g. persona warming drops its KV files
            if hasattr(listener, "adapter_deleted"):
                listener.adapter_deleted(name)

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
        limit = self.settings.server.max_upload_bytes
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
        try:  # the importer passed the creator check; the new agent is theirs
            self.activate(agent_id, name, principal=SYSTEM)
        except AdapterMismatchError as exc:  # kept as a version; the panel says why it is idle
            log.info("imported adapter %s not activated: %s", name, exc.message)

    def agent_deleted(self, agent_id: str) -> None:
        self.jobs.cancel_for_target("agent", agent_id, "the agent was deleted")
        for name in registry.folders_of_agent(self.settings.adapters_dir, agent_id):
            registry.remove(self.settings.adapters_dir, name)
        shutil.rmtree(self._runs_root() / agent_id, ignore_errors=True)
