"""The Wallet screen's handlers: the signed-in wallet's revenue shares in every agent, what it
may claim, and (where payments run on this node) its prepaid balance, deposits and spend.

Each handler takes the caller and asks the services for that wallet's own data only.
"""

from __future__ import annotations

import gradio as gr

from container import Services
from core.errors import AnimaError
from core.principal import Principal
from economy.shares_service import coins
from ui.common import show_error
from ui.wiring import Updates

HOLDING_COLUMNS = ["Agent", "Symbol", "Shares", "%", "Claimable"]
SIGN_IN = "Sign in with your wallet (at the top) to see your shares and claims."
NO_PAYMENTS = "Payments are not set up on this node."


def holdings(services: Services, *, principal: Principal) -> Updates:
    """The holdings table, the claim picker and a one-line total."""
    if not principal.signed_in:
        return {"status": SIGN_IN, "holdings": [], "pick": gr.update(choices=[], value=None)}
    try:
        rows = services.shares.holdings(principal=principal)
    except AnimaError as exc:
        return {"status": show_error(exc), "holdings": []}
    table = [
        [h.agent_name, h.symbol, h.balance_tokens, f"{h.percent:g}", coins(h.claimable_wei)]
        for h in rows
    ]
    choices = [(f"{h.agent_name} · {h.symbol}", h.agent_id) for h in rows]
    claimable = [h for h in rows if int(h.claimable_wei) > 0]
    total = sum(int(h.claimable_wei) for h in rows)
    if not rows:
        status = f"Signed in as `{principal.address}`: you hold no revenue shares yet."
    elif claimable:
        status = (
            f"Signed in as `{principal.address}`: **{coins(total)}** to claim "
            f"from {len(claimable)} agent{'s' if len(claimable) > 1 else ''}."
        )
    else:
        status = f"Signed in as `{principal.address}`: nothing to claim right now."
    first = claimable[0].agent_id if claimable else (rows[0].agent_id if rows else None)
    return {"status": status, "holdings": table, "pick": gr.update(choices=choices, value=first)}


def payments(services: Services, *, principal: Principal) -> Updates:
    """Balance, deposit and spend, from the payments side; a sentence where it is absent."""
    summary = services.shares.payments_summary(principal=principal)
    if summary is None:
        return {"payments": NO_PAYMENTS}
    if not principal.signed_in:
        return {"payments": SIGN_IN}
    return {"payments": "\n".join(f"- **{k}**: {v}" for k, v in summary.items())}


def refresh(services: Services, *, principal: Principal) -> Updates:
    return {**holdings(services, principal=principal), **payments(services, principal=principal)}
