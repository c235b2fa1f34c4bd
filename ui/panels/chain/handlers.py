"""The on-chain section's handlers: token id, contract, owner, card version, whether the
served card matches the hash on chain, the agent's token-bound account and royalty, and Mint.

Rendering is a pure function of ``ChainStatus`` (tests check it directly); the handlers only
call ``services.chain`` and return named updates (``status``, ``job``, ``message``).
"""

from __future__ import annotations

import html

from chain.service import ChainStatus
from container import Services
from core.errors import AnimaError
from core.principal import Principal
from ui.common import show_error
from ui.wiring import Updates


def _short(value: str | None, keep: int = 10) -> str:
    if not value:
        return "-"
    return value if len(value) <= 2 * keep else f"{value[:keep]}…{value[-6:]}"


def render_status(status: ChainStatus | None) -> str:
    """The section as HTML (a definition list; full values in ``title`` attributes)."""
    if status is None:
        return '<div class="anima-chain" data-minted="none">Pick or save an agent.</div>'
    if not status.minted:
        state = {
            "pending": "Minting…",
            "failed": "The last mint failed: try again.",
        }.get(status.mint_state or "", "Not minted: a draft that lives only in this app.")
        owner = f" Owner: <code>{html.escape(status.owner)}</code>." if status.owner else ""
        return (
            f'<div class="anima-chain" data-minted="false" data-state="{status.mint_state or ""}">'
            f"{html.escape(state)}{owner}</div>"
        )
    if status.matches is None:
        match = "nothing anchored yet"
    elif status.matches:
        match = "✓ matches the on-chain hash"
    else:
        match = "✗ differs from the on-chain hash (an update is waiting to be anchored)"
    source = (
        " (stored copy: the chain node is unreachable)" if status.owner_source == "cache" else ""
    )
    royalty = (
        f"{status.royalty_bps / 100:g} % to the token-bound account"
        if status.royalty_bps is not None
        else "-"
    )
    rows = [
        ("Token id", status.token_id, "chain-token-id"),
        ("Contract", status.contract, "chain-contract"),
        ("Owner", (status.owner or "-") + source, "chain-owner"),
        ("Card version", str(status.card_version), "chain-version"),
        ("Served card", match, "chain-match"),
        ("Token-bound account", status.token_bound_account, "chain-tba"),
        ("Royalty", royalty, "chain-royalty"),
    ]
    shortened = {"chain-token-id", "chain-contract", "chain-tba"}
    items = "".join(
        f'<dt>{html.escape(label)}</dt><dd id="{key}" title="{html.escape(value or "")}">'
        f"{html.escape(_short(value) if key in shortened else (value or '-'))}</dd>"
        for label, value, key in rows
    )
    matches = "true" if status.matches else "false"
    return (
        f'<div class="anima-chain" data-minted="true" data-matches="{matches}">'
        f'<dl style="word-break: break-all">{items}</dl></div>'
    )


def refresh(services: Services, agent_id: str | None) -> Updates:
    """The section, and a running mint's job id for the progress bar to follow."""
    if not agent_id:
        return {"status": render_status(None)}
    try:
        current = services.chain.status(agent_id)
    except AnimaError as exc:
        error = f'<div class="anima-chain" data-minted="error">{html.escape(exc.message)}</div>'
        return {"status": error}
    job = current.mint_job or {}
    updates = {"status": render_status(current)}
    if job.get("status") in ("queued", "running"):
        updates["job"] = job.get("id")
    return updates


def start_mint(services: Services, agent_id: str | None, *, principal: Principal) -> Updates:
    if not agent_id:
        return {"message": show_error("pick an agent to mint")}
    try:
        job = services.chain.request_mint(agent_id, principal=principal)
    except AnimaError as exc:
        return {"message": show_error(exc)}
    return {"job": job.id, "message": "Minting: the token goes to your wallet."}
