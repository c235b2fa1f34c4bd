"""``python app.py economy audit``: do the usage records, the charges and the chain agree?

Checks, each difference printed as one line:

1. every charge has its usage record (same request id) with the same tokens, and its amount
   is what the recorded price makes of them;
2. every settled batch is on chain (``settledAt``), and the lines its transaction carried,
   read back from the chain, are exactly the sums of its charges, less what the chain
   recorded as a shortfall;
3. no charge is left in a batch that the chain does not know after it was marked settled, and
   no batch the chain settled is missing here;
4. no paid route's usage record of a priced agent is without a charge: every request another
   wallet started after the agent's current price was set, and that used something.

Exit code 0 with "OK", else 1.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import select

from core.db import Database, as_utc
from economy.contract import Payments
from economy.prices import Price
from economy.records import AgentPriceRecord, ChargeRecord, SettlementBatchRecord
from economy.service import price_of
from economy.settlement import aggregate
from usage.records import UsageRecord


@dataclass
class AuditReport:
    charges: int = 0
    settled_batches: int = 0
    settled_amount: dict[str, int] = field(default_factory=dict)  # per currency
    differences: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.differences

    def text(self) -> str:
        totals = ", ".join(f"{amount} {cur}" for cur, amount in sorted(self.settled_amount.items()))
        head = f"{self.charges} charges, {self.settled_batches} settled batches" + (
            f" ({totals})" if totals else ""
        )
        if self.ok:
            return f"OK: {head}"
        return "\n".join([f"DIFFERENCES: {head}", *(f"- {d}" for d in self.differences)])


PAID_ROUTES = ("v1.chat", "v1.completions", "v1.audio.speech")


def audit(
    db: Database, payments: Payments, owners: dict[str, str | None] | None = None
) -> AuditReport:
    """``owners``: each agent's owner address (their own use is free), for check 4."""
    report = AuditReport()
    with db.session() as s:
        charges = list(s.scalars(select(ChargeRecord)).all())
        batches = list(s.scalars(select(SettlementBatchRecord)).all())
        ids = [c.id for c in charges]
        usage = {
            u.id: u for u in s.scalars(select(UsageRecord).where(UsageRecord.id.in_(ids))).all()
        }
        s.expunge_all()
    report.charges = len(charges)
    _check_charges(charges, usage, report)
    if owners is not None:
        _check_uncharged(db, {c.id for c in charges}, owners, report)
    by_batch: dict[str, list[ChargeRecord]] = defaultdict(list)
    for c in charges:
        if c.batch_id:
            by_batch[c.batch_id].append(c)
    settled_here = set()
    for b in batches:
        if b.status == "settled":
            settled_here.add(b.id)
            _check_batch(payments, b, by_batch.get(b.id, []), report)
        elif b.status == "open" and payments.settled_at(b.id):
            report.differences.append(f"batch {b.id} is settled on chain but open here")
    for event in payments.batch_events():
        if event["batch_id"] not in settled_here:
            known = any(b.id == event["batch_id"] for b in batches)
            if not known:
                report.differences.append(
                    f"batch {event['batch_id']} (tx {event['tx_hash']}) is on chain, unknown here"
                )
    return report


def _check_charges(
    charges: list[ChargeRecord], usage: dict[str, UsageRecord], report: AuditReport
) -> None:
    for c in charges:
        u = usage.get(c.id)
        if u is None:
            report.differences.append(f"charge {c.id} has no usage record")
            continue
        if (u.prompt_tokens, u.completion_tokens) != (c.prompt_tokens, c.completion_tokens):
            report.differences.append(
                f"charge {c.id}: tokens {c.prompt_tokens}+{c.completion_tokens}, usage record "
                f"{u.prompt_tokens}+{u.completion_tokens}"
            )
        price = Price(
            currency=c.currency,
            prompt_per_1k=int(c.prompt_per_1k),
            completion_per_1k=int(c.completion_per_1k),
            speech_per_minute=int(c.speech_per_minute),
        )
        expected = price.cost(c.prompt_tokens, c.completion_tokens, c.audio_seconds)
        if expected != int(c.amount):
            report.differences.append(f"charge {c.id}: amount {c.amount}, price makes {expected}")
        if c.status == "settled" and not c.batch_id:
            report.differences.append(f"charge {c.id} is settled without a batch")


def _check_uncharged(
    db: Database, charged: set[str], owners: dict[str, str | None], report: AuditReport
) -> None:
    with db.session() as s:
        prices = [r for r in s.scalars(select(AgentPriceRecord)).all() if not price_of(r).free]
        for row in prices:
            price, since = price_of(row), as_utc(row.updated_at)
            owner = (owners.get(row.agent_id) or "").lower()
            records = s.scalars(
                select(UsageRecord).where(
                    UsageRecord.agent_id == row.agent_id,
                    UsageRecord.route.in_(PAID_ROUTES),
                    UsageRecord.address.is_not(None),
                    UsageRecord.created_at >= since,
                )
            ).all()
            for u in records:
                started = as_utc(u.created_at) - timedelta(milliseconds=u.latency_ms)
                used = price.cost(u.prompt_tokens, u.completion_tokens, u.audio_seconds)
                payer = (u.address or "").lower()
                if u.id not in charged and payer != owner and started >= since and used > 0:
                    report.differences.append(
                        f"usage record {u.id} ({u.route}, agent {row.agent_id}) has no charge"
                    )


def _check_batch(
    payments: Payments,
    batch: SettlementBatchRecord,
    members: list[ChargeRecord],
    report: AuditReport,
) -> None:
    if not payments.settled_at(batch.id):
        report.differences.append(f"batch {batch.id} is settled here but not on chain")
        return
    if not batch.tx_hash:
        report.differences.append(f"batch {batch.id} has no transaction recorded")
        return
    chain_id, lines = payments.settled_lines(batch.tx_hash)
    if chain_id != batch.id:
        report.differences.append(f"batch {batch.id}: its transaction settled {chain_id}")
        return
    if sorted(lines) != aggregate(members):
        report.differences.append(
            f"batch {batch.id}: the chain's lines differ from its {len(members)} charges"
        )
    unpaid = sum(int(s["unpaid"]) for s in payments.shortfalls(batch.tx_hash))
    recorded = sum(int(c.shortfall) for c in members)
    if unpaid != recorded:
        report.differences.append(
            f"batch {batch.id}: the chain's shortfall {unpaid}, recorded {recorded}"
        )
    if any(c.status != "settled" for c in members):
        report.differences.append(f"batch {batch.id} has charges not marked settled")
    report.settled_batches += 1
    for line in lines:
        report.settled_amount[line.currency] = report.settled_amount.get(line.currency, 0) + (
            line.amount
        )
    for c in members:  # what the chain could not debit is not income
        report.settled_amount[c.currency] -= int(c.shortfall)
