"""The Models screen's handlers: show the default and the connections, test and add a local
model or a server, test again, delete, pick the default; and an agent's own model.

Each takes plain values and the caller (``principal``) and returns named updates; the
connections service decides who may change what and refuses bad input with a sentence, which
is shown next to the form that caused it (the form keeps its values).
"""

from __future__ import annotations

from typing import Any

import gradio as gr

from agents.model_connections import ConnectionView, ModelsOverview, NewConnection
from container import Services
from core.errors import AnimaError
from core.principal import Principal
from ui.common import show_error
from ui.wiring import Updates

CONNECTION_COLUMNS = ["name", "kind", "points to", "API key", "models", "details"]
SETTINGS_DEFAULT = ""  # the default picker's value for "the settings' default"
HOW_TO = """\
Either of these:
- **a GGUF file on this machine**: download one (for example a Q4_K_M of Qwen2.5-7B-Instruct
  or Llama-3.1-8B-Instruct) into `{models_dir}` and add it below by its file name;
- **a model server** that speaks the OpenAI API, added below by its base URL:
  llama.cpp `llama-server -m model.gguf --port 8080` → `http://127.0.0.1:8080/v1`;
  Ollama → `http://127.0.0.1:11434/v1`; LM Studio → `http://127.0.0.1:1234/v1`;
  vLLM → `http://127.0.0.1:8000/v1`; a hosted API such as OpenRouter →
  `https://openrouter.ai/api/v1` with your API key (stored encrypted, never shown again).

Then make it the default, or give it to one agent in the agent editor (Generation → Model).
"""


def _rows(views: list[ConnectionView]) -> list[list[Any]]:
    rows = []
    for view in views:
        where = view.base_url or view.path or "(operators only)"
        facts = ", ".join(f"{k}: {v}" for k, v in view.details.items() if v not in (None, ""))
        models = ", ".join(view.models[:8]) + (" …" if len(view.models) > 8 else "")
        rows.append([view.name, view.kind, where, view.api_key, models, facts])
    return rows


def _default_choices(overview: ModelsOverview) -> list[tuple[str, str]]:
    choices = [(f"Settings default: {overview.settings_default}", SETTINGS_DEFAULT)]
    for view in overview.connections:
        pairs = zip(view.models, view.refs, strict=True)
        choices += [(f"{view.name}: {model}", ref) for model, ref in pairs]
    return choices


def _summary(overview: ModelsOverview) -> str:
    toy = f"\n\n{overview.toy_note}" if overview.default is None else ""
    who = (
        ""
        if overview.can_change
        else "\n\n*Sign in as the operator (ANIMA_ADMIN_ADDRESSES) to add or change models.*"
    )
    return f"**Default model:** `{overview.default_label}`{toy}{who}"


def refresh(services: Services, *, principal: Principal) -> Updates:
    """Everything the screen shows, read afresh."""
    overview = services.models.overview(principal=principal)
    names = [view.name for view in overview.connections]
    return {
        "summary": _summary(overview),
        "how_to": HOW_TO.format(models_dir=overview.models_dir),
        "table": gr.update(value=_rows(overview.connections), visible=bool(names)),
        "default": gr.update(
            choices=_default_choices(overview), value=overview.default or SETTINGS_DEFAULT
        ),
        "picked": gr.update(choices=names, value=names[0] if names else None),
        "empty": gr.update(visible=not names),
    }


def _spec(kind: str, name: str, where: str, key: str | None = None) -> NewConnection:
    if kind == "local":
        return NewConnection(name=name or "", kind="local", path=where)
    return NewConnection(name=name or "", kind="openai", base_url=where, api_key=key or None)


def _found(models: list[str], details: dict[str, Any]) -> str:
    facts = ", ".join(f"{k}: {v}" for k, v in details.items() if v not in (None, ""))
    listed = ", ".join(models[:10]) + (" …" if len(models) > 10 else "")
    return f"It answered. Models: {listed}" + (f" ({facts})" if facts else "")


def test_local(
    services: Services, name: str, path: str, progress: Any = None, *, principal: Principal
) -> Updates:
    return _test(services, _spec("local", name, path), "local_status", progress, principal)


def test_server(
    services: Services,
    name: str,
    url: str,
    key: str,
    progress: Any = None,
    *,
    principal: Principal,
) -> Updates:
    spec = _spec("openai", name, url, key)
    return _test(services, spec, "server_status", progress, principal)


def _test(
    services: Services, spec: NewConnection, status: str, progress: Any, principal: Principal
) -> Updates:
    if progress is not None:
        progress(0.1, desc="Testing the connection…")
    try:
        result = services.models.test(spec, principal=principal)
    except AnimaError as exc:
        return {status: show_error(exc)}
    return {status: _found(result.models, result.details)}


def add_local(
    services: Services, name: str, path: str, progress: Any = None, *, principal: Principal
) -> Updates:
    return _add(services, _spec("local", name, path), "local_status", progress, principal)


def add_server(
    services: Services,
    name: str,
    url: str,
    key: str,
    progress: Any = None,
    *,
    principal: Principal,
) -> Updates:
    updates = _add(services, _spec("openai", name, url, key), "server_status", progress, principal)
    if "table" in updates:
        updates["server_key"] = ""  # saved (encrypted): never left on the screen
    return updates


def _add(
    services: Services, spec: NewConnection, status: str, progress: Any, principal: Principal
) -> Updates:
    if progress is not None:
        progress(0.1, desc="Testing the connection before saving it…")
    try:
        view = services.models.add(spec, principal=principal)
    except AnimaError as exc:
        return {status: show_error(exc)}
    updates = refresh(services, principal=principal)
    updates[status] = f"Added {view.name}. " + _found(view.models, view.details)
    return updates


def retest(services: Services, name: str | None, *, principal: Principal) -> Updates:
    if not name:
        return {"status": show_error("Pick a connection first.")}
    try:
        view = services.models.retest(name, principal=principal)
    except AnimaError as exc:
        return {"status": show_error(exc)}
    updates = refresh(services, principal=principal)
    updates["status"] = f"{view.name}: " + _found(view.models, view.details)
    return updates


def delete(services: Services, name: str | None, *, principal: Principal) -> Updates:
    if not name:
        return {"status": show_error("Pick a connection first.")}
    try:
        services.models.delete(name, principal=principal)
    except AnimaError as exc:
        return {"status": show_error(exc)}
    updates = refresh(services, principal=principal)
    updates["status"] = f"Deleted {name}. Agents that used it fall back to the default."
    return updates


def set_default(services: Services, ref: str | None, *, principal: Principal) -> Updates:
    try:
        services.models.set_default(ref or None, principal=principal)
    except AnimaError as exc:
        return {"status": show_error(exc)}
    updates = refresh(services, principal=principal)
    updates["status"] = "Default model set: agents without a model of their own use it now."
    return updates


def load(
    services: Services, ref: str | None, progress: Any = None, *, principal: Principal
) -> Updates:
    """Load the picked model now, with progress, so the first reply does not wait for it."""
    if not ref:
        return {
            "status": "The settings' default model loads at start-up (ANIMA_LLM_PRELOAD); "
            "pick a connection's model to load it now."
        }
    if progress is not None:
        progress(0.2, desc=f"Loading {ref}… a large model takes a minute or more")
    try:
        seconds = services.models.load(ref, principal=principal)
    except AnimaError as exc:
        return {"status": show_error(exc)}
    return {"status": f"{ref} is ready ({seconds:.1f} s)."}


# ----- an agent's own model (a panel of the agent editor) ----------------------------------
def agent_model_choices(services: Services) -> list[tuple[str, str]]:
    return [("Default model", SETTINGS_DEFAULT), *services.models.model_choices()]


def load_agent_model(services: Services, agent_id: str | None, *, principal: Principal) -> Updates:
    """The picked agent's model, and the choices as they are now."""
    choices = agent_model_choices(services)
    if not agent_id:
        return {
            "agent_model": gr.update(choices=choices, value=SETTINGS_DEFAULT, interactive=False),
            "agent_model_status": "Save the agent first, then pick its model.",
        }
    try:
        agent = services.agents.get_visible(agent_id, principal=principal)
        current = agent.model or SETTINGS_DEFAULT
    except AnimaError as exc:
        return {"agent_model_status": show_error(exc)}
    if current not in {ref for _, ref in choices}:
        choices.append((f"{current} (not among the connections)", current))
    return {
        "agent_model": gr.update(choices=choices, value=current, interactive=True),
        "agent_model_status": "",
    }


def save_agent_model(
    services: Services, agent_id: str | None, ref: str | None, *, principal: Principal
) -> Updates:
    if not agent_id:
        return {"agent_model_status": show_error("Save the agent first, then pick its model.")}
    try:
        view = services.agents.update_agent(agent_id, {"model": ref or None}, principal=principal)
    except AnimaError as exc:
        return {"agent_model_status": show_error(exc)}
    model = view.model or "the default model"
    return {"agent_model_status": f"Saved: {view.name} now answers with {model}."}
