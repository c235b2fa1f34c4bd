"""What the economy's routes answer: a wallet's balance, spend per agent, an agent's income."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from pydantic import BaseModel
from sqlalchemy import select

from core.db import Database
from economy.prices import PriceView
from economy.records import ChargeRecord


class BalanceView(BaseModel):
    address: str
    currency: str
    balance: str  # on chain, in wei (or the token's smallest unit), as a decimal string
    reserved: str  # held by replies still streaming
    unsettled: str  # charged, waiting for the next settlement
    available: str
    contract: str


class SpendRow(BaseModel):
    agent_id: str
    currency: str
    requests: int
    prompt_tokens: int
    completion_tokens: int
    amount: str
    settled: str


class IncomeView(BaseModel):
    agent_id: str
    token_id: str
    account: str  # the ERC-6551 account the income is paid to
    price: PriceView
    rows: list[SpendRow]  # per currency: what callers were charged (gross)
    fee_bps: int
    revenue_share: dict[str, Any] | None


def sum_rows(where: Any, db: Database) -> list[SpendRow]:
    groups: dict[tuple[str, str], dict[str, int]] = defaultdict(lambda: defaultdict(int))
    with db.session() as s:
        for c in s.scalars(select(ChargeRecord).where(where)).all():
            g = groups[(c.agent_id, c.currency)]
            g["requests"] += 1
            g["prompt"] += c.prompt_tokens
            g["completion"] += c.completion_tokens
            g["amount"] += int(c.amount)
            if c.status == "settled":
                g["settled"] += int(c.amount) - int(c.shortfall)
    return [
        SpendRow(
            agent_id=agent_id,
            currency=currency,
            requests=g["requests"],
            prompt_tokens=g["prompt"],
            completion_tokens=g["completion"],
            amount=str(g["amount"]),
            settled=str(g["settled"]),
        )
        for (agent_id, currency), g in sorted(groups.items())
    ]
