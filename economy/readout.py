"""The payments side as the Revenue panel, the Wallet screen and token metadata show it.

``SharesService`` reads prices and balances through its ``PaymentsReadout`` seam so that the
shares code does not depend on how payments are kept; this is that seam over
``EconomyService``. Native amounts are shown as the shares' screens show them (``coins``);
an ERC-20 amount in its smallest unit.
"""

from __future__ import annotations

from core.errors import AnimaError
from core.principal import Principal
from economy.prices import Price
from economy.records import NATIVE
from economy.service import EconomyService
from economy.shares_service import coins


def amount_label(amount: int | str, currency: str) -> str:
    """``amount`` (smallest units) as a readable figure with its unit."""
    if currency == NATIVE:
        return coins(amount)
    return f"{int(amount)} units of {currency[:10]}…"


def price_label(price: Price) -> str | None:
    """``price`` for people; ``None`` when the agent is free."""
    if price.free:
        return None
    parts = []
    if price.prompt_per_1k:
        parts.append(f"{amount_label(price.prompt_per_1k, price.currency)} per 1,000 prompt tokens")
    if price.completion_per_1k:
        amount = amount_label(price.completion_per_1k, price.currency)
        parts.append(f"{amount} per 1,000 completion tokens")
    if price.speech_per_minute:
        amount = amount_label(price.speech_per_minute, price.currency)
        parts.append(f"{amount} per minute of speech")
    return "; ".join(parts)


class EconomyReadout:
    """``PaymentsReadout`` over the payments service."""

    def __init__(self, economy: EconomyService) -> None:
        self.economy = economy

    def price_label(self, agent_id: str) -> str | None:
        return price_label(self.economy.price(agent_id))

    def wallet_summary(self, *, principal: Principal) -> dict[str, str] | None:
        """Balance (on chain, reserved, unsettled, available) and spend per agent; ``None``
        when the node has no Payments contract to read."""
        try:
            balance = self.economy.balance(principal=principal)
            spend = self.economy.spend(principal=principal)
        except AnimaError:
            return None
        summary = {
            "Payments contract": balance.contract,
            "Prepaid balance": amount_label(balance.balance, NATIVE),
            "Reserved by replies in flight": amount_label(balance.reserved, NATIVE),
            "Charged, not settled yet": amount_label(balance.unsettled, NATIVE),
            "Available": amount_label(balance.available, NATIVE),
        }
        for row in spend:
            summary[f"Spent on {row.agent_id[:8]}"] = (
                f"{amount_label(row.amount, row.currency)} for {row.requests} requests"
            )
        return summary
