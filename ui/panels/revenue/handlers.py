"""The Revenue panel's handlers: what the agent earns and who shares it.

Shows the agent's price (from payments, where they run), the balance of its own ERC-6551
account, its revenue shares (supply, the revenue share, holders) and the income the shares
received per snapshot, as a plot. The owner issues shares here; snapshots and claims are sent
by the browser wallet (``wallet_js.py``). Rendering is pure (tests call it directly); the
handlers only call ``services.shares`` and return named updates.
"""

from __future__ import annotations

import html
from datetime import UTC, datetime
from typing import Any

import gradio as gr
import pandas as pd

from container import Services
from core.errors import AnimaError
from core.principal import Principal
from economy.shares_service import IssueRequest, RevenueView, coins
from ui.common import show_error
from ui.wiring import Updates

HOLDER_COLUMNS = ["Holder", "Shares", "%"]
# Labels and values in the body text's size (the page's prose styles enlarge <dt>).
_TEXT = "font-size: var(--text-md) !important; line-height: 1.4; margin: 0"
INCOME_COLUMNS = ["time", "ETH"]


def empty_income() -> pd.DataFrame:
    return pd.DataFrame({"time": pd.Series([], dtype="datetime64[ns, UTC]"), "ETH": []})


def render_summary(view: RevenueView | None, price: str | None) -> str:
    """Price, the agent's account and its shares, as a definition list."""
    if view is None:
        return '<div class="anima-revenue" data-state="none">Pick or save an agent.</div>'
    rows = [("Price", price or "free", "revenue-price")]
    if not view.minted:
        rows.append(("Account", "none yet: mint the agent to give it one", "revenue-account"))
    else:
        rows.append(("Agent account", view.token_bound_account or "-", "revenue-account"))
        rows.append(("Account balance", coins(view.account_balance_wei), "revenue-balance"))
    shares = view.shares
    if shares is None:
        rows.append(("Shares", "none issued", "revenue-shares"))
    else:
        rows += [
            ("Shares", f"{shares.supply_tokens} {shares.symbol} ({shares.name})", "revenue-shares"),
            ("Revenue share", f"{shares.revenue_bps / 100:g} % of income", "revenue-bps"),
            (
                "Claimable per snapshot",
                f"{shares.claimable_bps / 100:g} %",
                "revenue-claimable-bps",
            ),
            ("Share contract", shares.address, "revenue-contract"),
            ("Received so far", coins(shares.total_received_wei), "revenue-received"),
            ("Waiting for a snapshot", coins(shares.pending_revenue_wei), "revenue-pending"),
            ("Snapshots", str(shares.current_snapshot or 0), "revenue-snapshots"),
        ]
    items = "".join(
        f'<dt style="font-weight: 600; {_TEXT}">{html.escape(label)}</dt>'
        f'<dd id="{key}" title="{html.escape(value)}" style="{_TEXT}">'
        f"{html.escape(value)}</dd>"
        for label, value, key in rows
    )
    issued = "true" if shares else "false"
    # Label and value side by side (two columns), addresses break anywhere on narrow screens.
    grid = (
        "display: grid; grid-template-columns: fit-content(45%) 1fr; "
        "gap: 4px 16px; overflow-wrap: anywhere; margin: 0"
    )
    return (
        f'<div class="anima-revenue" data-issued="{issued}"><dl style="{grid}">{items}</dl></div>'
    )


def short_address(address: str) -> str:
    """``0xdd2258…f77A5b``: the table stays readable on a phone; the ends identify it."""
    return f"{address[:8]}…{address[-6:]}" if len(address) > 16 else address


def income_frame(view: RevenueView | None) -> pd.DataFrame:
    """The shares' income over time: the running total at each snapshot, then now."""
    if view is None or view.shares is None:
        return empty_income()
    total = 0
    times: list[datetime] = [view.shares.issued_at] if view.shares.issued_at else []
    values: list[float] = [0.0] if view.shares.issued_at else []
    for point in view.income:
        total += int(point.revenue_wei)
        times.append(point.time or datetime.now(UTC))
        values.append(total / 1e18)
    pending = int(view.shares.pending_revenue_wei or 0)
    times.append(datetime.now(UTC))
    values.append((total + pending) / 1e18)
    return pd.DataFrame({"time": pd.to_datetime(times, utc=True), "ETH": values})


def refresh(services: Services, agent_id: str | None, *, principal: Principal) -> Updates:
    """The whole panel for ``agent_id``, and the issue form only for its owner."""
    blank = {
        "holders": gr.update(value=[], visible=False),
        "income": gr.update(value=empty_income(), visible=False),
        "issue_box": gr.update(visible=False),
    }
    if not agent_id:
        return {"summary": render_summary(None, None), "mine": "", **blank}
    try:
        view = services.shares.revenue(agent_id)
        price = services.shares.price_label(agent_id)
        holders = services.shares.holders(agent_id) if view.shares else []
    except AnimaError as exc:
        error = f'<div class="anima-revenue" data-state="error">{html.escape(exc.message)}</div>'
        return {"summary": error, "mine": "", **blank}
    return {
        "summary": render_summary(view, price),
        # Before shares are issued an empty plot and table would only be noise.
        "holders": gr.update(
            value=[[short_address(h.address), h.balance_tokens, f"{h.percent:g}"] for h in holders],
            visible=view.shares is not None,
        ),
        "income": gr.update(value=income_frame(view), visible=view.shares is not None),
        "issue_box": gr.update(
            visible=view.shares is None and _owns(services, agent_id, principal)
        ),
        "mine": _mine(services, agent_id, view, principal),
    }


def _owns(services: Services, agent_id: str, principal: Principal) -> bool:
    if not principal.signed_in:
        return False
    try:
        services.chain.require_owner(principal=principal, agent_id=agent_id)
    except AnimaError:
        return False
    return True


def _mine(services: Services, agent_id: str, view: RevenueView, principal: Principal) -> str:
    """What the signed-in wallet may claim from this agent's shares."""
    if view.shares is None:
        return ""
    if not principal.signed_in or principal.address is None:
        return "Sign in with the wallet that holds shares to see what you can claim."
    try:
        rows = services.shares.claimable(agent_id, principal.address)
    except AnimaError as exc:
        return show_error(exc)
    open_ = [r for r in rows if not r.claimed]
    if not open_:
        return "You have nothing to claim from this agent's shares right now."
    total = sum(int(r.amount_wei) for r in open_)
    ids = ", ".join(str(r.snapshot_id) for r in open_)
    return f"You can claim **{coins(total)}** (snapshots {ids})."


def issue(
    services: Services,
    agent_id: str | None,
    supply: Any,
    name: str,
    symbol: str,
    revenue_percent: Any,
    claimable_percent: Any,
    *,
    principal: Principal,
) -> Updates:
    """Issue the agent's shares (the owner; the whole supply goes to their wallet)."""
    if not agent_id:
        return {"message": show_error("pick an agent first")}
    try:
        request = IssueRequest(
            supply=int(supply or 0),
            name=(name or "").strip(),
            symbol=(symbol or "").strip().upper(),
            revenue_bps=round(float(revenue_percent or 0) * 100),
            claimable_bps=round(float(claimable_percent or 0) * 100),
        )
        shares = services.shares.issue(agent_id, request, principal=principal)
    except AnimaError as exc:
        return {"message": show_error(exc)}
    except (TypeError, ValueError) as exc:
        return {"message": show_error(f"check the numbers: {exc}")}
    return {
        "message": f"Issued {shares.supply_tokens} {shares.symbol} to your wallet "
        f"({shares.revenue_bps / 100:g} % of the agent's income goes to holders)."
    }
