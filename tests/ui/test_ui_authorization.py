"""Every UI action reaches the services with the caller, so the services' own checks apply.

The route walk (tests/api/test_authorization.py) covers HTTP; this covers the studio. Two
walks, both against what the code really is rather than a list kept by hand:
- every call in ``ui/`` to a service method that takes ``principal`` passes it;
- every event the built studio registers ends in a handler that takes ``principal`` whenever
  that handler calls such a method, so the wallet behind the browser reaches the service.
"""

from __future__ import annotations

import ast
import inspect
import textwrap
from dataclasses import fields
from pathlib import Path
from typing import Any

from container import Services

UI_DIR = Path(__file__).resolve().parents[2] / "ui"


def _guarded_methods(services: Services) -> dict[str, set[str]]:
    """Per service attribute of ``Services``: its methods that require ``principal``."""
    found: dict[str, set[str]] = {}
    for field in fields(Services):
        service = getattr(services, field.name)
        names = set()
        for name, member in inspect.getmembers(type(service), inspect.isfunction):
            param = inspect.signature(member).parameters.get("principal")
            if param is not None and param.default is inspect.Parameter.empty:
                names.add(name)
        if names:
            found[field.name] = names
    return found


def _service_of(node: ast.expr, aliases: dict[str, str]) -> str | None:
    """``services.<x>`` (or a local alias of it) names service ``x``."""
    if (
        isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id == "services"
    ):
        return node.attr
    if isinstance(node, ast.Name):
        return aliases.get(node.id)
    return None


def _calls_without_caller(tree: ast.AST, guarded: dict[str, set[str]]) -> list[tuple[int, str]]:
    """(line, ``svc.method``) of each guarded call in ``tree`` that does not pass ``principal=``."""
    aliases: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target, svc = node.targets[0], _service_of(node.value, {})
            if isinstance(target, ast.Name) and svc is not None:
                aliases[target.id] = svc
    missing = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        svc = _service_of(node.func.value, aliases)
        if svc is None or node.func.attr not in guarded.get(svc, set()):
            continue
        if not any(k.arg == "principal" for k in node.keywords):
            missing.append((node.lineno, f"{svc}.{node.func.attr}"))
    return missing


def _guarded_calls(fn: Any, guarded: dict[str, set[str]]) -> list[tuple[int, str]]:
    """Guarded service calls made in the body of ``fn`` (with or without the caller)."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(fn)))
    every = {svc: names for svc, names in guarded.items()}
    found = _calls_without_caller(tree, every)
    for node in ast.walk(tree):  # calls that do pass principal count too
        if isinstance(node, ast.Call) and any(k.arg == "principal" for k in node.keywords):
            found.append((node.lineno, ast.unparse(node.func)))
    return found


def test_every_guarded_service_call_in_the_ui_passes_the_caller(services: Services) -> None:
    guarded = _guarded_methods(services)
    assert {"agents", "jobs", "knowledge", "voice", "finetune", "chat"} <= set(guarded)
    missing, files = [], sorted(UI_DIR.rglob("*.py"))
    assert len(files) > 20, "the walk no longer finds the UI's modules"
    for path in files:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        missing += [
            f"{path.name}:{line} {call}" for line, call in _calls_without_caller(tree, guarded)
        ]
    assert missing == [], f"UI calls that do not pass the caller to the service: {missing}"


def test_the_walk_catches_a_call_without_the_caller(services: Services) -> None:
    guarded = _guarded_methods(services)
    bad = ast.parse(
        "def save(services, agent_id, patch):\n"
        "    kb = services.knowledge\n"
        "    services.agents.update_agent(agent_id, patch)\n"
        "    kb.delete_document('x', 'y')\n"
    )
    assert [call for _, call in _calls_without_caller(bad, guarded)] == [
        "agents.update_agent",
        "knowledge.delete_document",
    ]


def test_every_ui_action_that_acts_for_a_user_gets_the_caller(services: Services) -> None:
    """Walk the events of the built studio down to their handlers."""
    from ui.studio import build_ui

    guarded = _guarded_methods(services)
    demo = build_ui(services)
    handlers = [getattr(block_fn.fn, "handler", None) for block_fn in demo.fns.values()]
    wired = [h for h in handlers if h is not None]
    assert len(wired) > 30, f"the walk found only {len(wired)} wired handlers"
    acting = [h for h in wired if _guarded_calls(h, guarded)]
    assert len(acting) > 10, "the walk no longer finds the handlers that change things"
    without = sorted(
        {h.__qualname__ for h in acting if "principal" not in inspect.signature(h).parameters}
    )
    assert without == [], f"UI actions that change things without knowing who acts: {without}"
