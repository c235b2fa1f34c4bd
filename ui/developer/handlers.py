"""The Developer screen's handlers: create, list and revoke API keys; plot usage.

Each takes plain values and the caller (``principal``) and returns named updates; the services
decide what the caller may see and do (their own keys; their agents' usage, counted).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import gradio as gr
import pandas as pd

from chain.api_keys import SCOPES, ApiKeyView, KeyLimits
from container import Services
from core.errors import AnimaError
from core.principal import Principal
from ui.common import show_error
from ui.wiring import Updates
from usage.service import UsageQuery

KEY_COLUMNS = ["id", "name", "key", "scopes", "agents", "limits", "used", "left", "status"]
ALL_AGENTS = "all"
SIGN_IN = "Sign in to create API keys and see your usage."


def _limits_text(limits: KeyLimits) -> str:
    parts = [
        f"{limits.rpm} req/min" if limits.rpm else "",
        f"{limits.tpm} tok/min" if limits.tpm else "",
        f"{limits.max_streams} streams" if limits.max_streams else "",
        f"{limits.budget_tokens} tok/{limits.budget_period}" if limits.budget_tokens else "",
        f"expires {limits.expires_at:%Y-%m-%d %H:%M}" if limits.expires_at else "",
    ]
    return ", ".join(p for p in parts if p) or "none"


def _key_row(services: Services, key: ApiKeyView, principal: Principal) -> list[Any]:
    limits = key.limits
    if key.revoked_at is not None:
        used, left, status = "", "", "revoked"
    else:
        usage = services.usage.key_usage(key.id, principal=principal)
        used = f"{usage.tokens_this_period} tok this {usage.period}"
        left = "unlimited" if usage.remaining_budget is None else f"{usage.remaining_budget} tok"
        expired = limits.expires_at is not None and limits.expires_at <= datetime.now(UTC)
        status = "expired" if expired else "active"
    return [
        key.id,
        key.name,
        key.prefix + "…",
        ",".join(limits.scopes),
        "all" if limits.allowed_agents is None else ",".join(limits.allowed_agents),
        _limits_text(limits),
        used,
        left,
        status,
    ]


def keys(services: Services, *, principal: Principal) -> Updates:
    """The caller's keys as a table, and the active ones to pick for revoking."""
    if principal.address is None:
        return {"keys": [], "picker": gr.update(choices=[], value=None), "status": SIGN_IN}
    views = services.auth.list_api_keys(principal=principal)
    rows = [_key_row(services, key, principal) for key in views]
    active = [(f"{k.name or 'key'} ({k.prefix}…)", k.id) for k in views if k.revoked_at is None]
    return {
        "keys": rows,
        "picker": gr.update(choices=active, value=None),
        "status": f"{len(active)} active key(s).",
    }


def _positive(value: Any) -> int | None:
    """Blank or zero in a number box means "no limit"."""
    return int(value) if value not in (None, "") and int(value) > 0 else None


def create(
    services: Services,
    name: str,
    scopes: list[str],
    agents: list[str] | None,
    expires_days: float | None,
    rpm: float | None,
    tpm: float | None,
    streams: float | None,
    budget: float | None,
    period: str,
    *,
    principal: Principal,
) -> Updates:
    """A new key; the key itself is shown this once."""
    try:
        days = _positive(expires_days)
        limits = KeyLimits(
            scopes=[s for s in SCOPES if s in (scopes or [])] or ["chat"],
            allowed_agents=list(agents) if agents else None,
            expires_at=datetime.now(UTC) + timedelta(days=days) if days else None,
            rpm=_positive(rpm),
            tpm=_positive(tpm),
            max_streams=_positive(streams),
            budget_tokens=_positive(budget),
            budget_period="day" if period == "day" else "month",
        )
        created = services.auth.create_api_key(name or "", limits, principal=principal)
    except AnimaError as exc:
        return {"new_key": "", "status": show_error(exc)}
    listed = keys(services, principal=principal)
    listed["status"] = "Key created. Copy it now: it is not shown again."
    return {**listed, "new_key": created.key}


def revoke(services: Services, key_id: str | None, *, principal: Principal) -> Updates:
    if not key_id:
        return {"status": show_error("Pick a key to revoke.")}
    try:
        services.auth.revoke_api_key(key_id, principal=principal)
    except AnimaError as exc:
        return {"status": show_error(exc)}
    listed = keys(services, principal=principal)
    listed["status"] = "Key revoked: it stops working at once."
    return {**listed, "new_key": ""}  # a key shown once is not left on the screen


def owned_agents(services: Services, *, principal: Principal) -> Updates:
    """The agents whose usage the caller may see in full (their own)."""
    mine = [
        (a.name, a.id)
        for a in services.agents.list_agents()
        if principal.is_address(a.owner_address)
    ]
    return {"agent": gr.update(choices=[("All (you and your agents)", ALL_AGENTS), *mine])}


def plots(services: Services, agent_id: str | None, *, principal: Principal) -> Updates:
    """Requests, distinct users and tokens per day: of one of the caller's agents, or of
    everything the caller may see (their own use and their agents')."""
    empty = pd.DataFrame({"day": [], "requests": [], "users": [], "tokens": [], "kind": []})
    if principal.address is None:
        return {"requests_plot": empty, "users_plot": empty, "tokens_plot": empty}
    query = UsageQuery("day", agent_id=None if agent_id in (None, ALL_AGENTS) else agent_id)
    report = services.usage.report(query, principal=principal)
    frame = pd.DataFrame(
        [
            {
                "day": row.group,
                "requests": row.requests,
                "users": row.users,
                "prompt": row.prompt_tokens,
                "completion": row.completion_tokens,
            }
            for row in report.rows
        ],
        columns=["day", "requests", "users", "prompt", "completion"],
    )
    tokens = frame.melt(
        id_vars=["day"], value_vars=["prompt", "completion"], var_name="kind", value_name="tokens"
    )
    return {"requests_plot": frame, "users_plot": frame, "tokens_plot": tokens}
