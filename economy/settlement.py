"""Settling charges on chain in batches, exactly once.

1. ``open_batch`` picks unsettled charges and writes the batch row (a fresh 32-byte id) with
   its members in one database transaction, *before* anything is sent.
2. The ``economy.settle`` job (``economy/jobs.py``) runs ``send_step``: if the chain already
   has the batch id (a crash after sending), the batch is marked settled without sending again;
   otherwise one ``Payments.settle`` transaction carries the whole batch, sent through
   ``chain.transactions.TxSender`` under the batch's key (signed bytes recorded first, the
   same bytes re-broadcast after a crash), and the batch is marked settled once mined.
3. A node that is down is waited for and retried (``ANIMA_CHAIN_TX_RETRIES``); a batch whose
   job gave up stays open and ``tick`` starts a new attempt. A refused batch is reported (the
   batch row keeps the reason) and its charges go back to be settled in a new batch: the
   contract refused it, so nobody was charged.

The contract refuses a batch id twice, so even a second transaction could not charge twice.
Lines are aggregated per (currency, agent, payer) and sorted, so each agent is paid once per
batch and each payer's balance is written once per agent.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from sqlalchemy import select, update

from chain.transactions import TxReverted, TxSender, reaching_node
from core.db import Database
from core.jobs import JobService, JobView
from economy.contract import Payments, SettleLine
from economy.ledger import Ledger
from economy.records import ChargeRecord, SettlementBatchRecord, utcnow

log = logging.getLogger(__name__)

SETTLE_JOB = "economy.settle"


def tx_key(batch_id: str) -> str:
    """The batch's transaction key: the same for every attempt, so a re-run re-broadcasts."""
    return f"{SETTLE_JOB}:{batch_id}"


def aggregate(charges: list[ChargeRecord]) -> list[SettleLine]:
    amounts: dict[tuple[str, int, str], int] = defaultdict(int)
    for c in charges:
        amounts[(c.currency, int(c.token_id), c.payer)] += int(c.amount)
    return sorted(
        SettleLine(currency=cur, token_id=tid, payer=payer, amount=amount)
        for (cur, tid, payer), amount in amounts.items()
        if amount > 0
    )


class Settlement:
    def __init__(
        self,
        db: Database,
        jobs: JobService,
        contracts: Callable[[], tuple[Payments, TxSender]],
        ledger: Ledger,
        batch_size: int = 500,
    ) -> None:
        self.db = db
        self.jobs = jobs
        self.contracts = contracts
        self.ledger = ledger
        self.batch_size = batch_size
        self._tick_lock = threading.Lock()  # the loop and `settle_now` batch one at a time

    # ----- batches ------------------------------------------------------------------------
    def open_batch(self) -> str | None:
        """Write a batch of the oldest unsettled charges; its id, or ``None`` when none wait."""
        with self.db.session() as s:
            charges = s.scalars(
                select(ChargeRecord)
                .where(ChargeRecord.status == "unsettled")
                .order_by(ChargeRecord.created_at, ChargeRecord.id)
                .limit(self.batch_size)
            ).all()
            if not charges:
                return None
            batch_id = "0x" + os.urandom(32).hex()
            s.add(
                SettlementBatchRecord(
                    id=batch_id,
                    status="open",
                    charges=len(charges),
                    lines=len(aggregate(list(charges))),
                )
            )
            for c in charges:
                c.status = "batched"
                c.batch_id = batch_id
        return batch_id

    def members(self, batch_id: str) -> list[ChargeRecord]:
        with self.db.session() as s:
            rows = s.scalars(
                select(ChargeRecord)
                .where(ChargeRecord.batch_id == batch_id)
                .order_by(ChargeRecord.created_at, ChargeRecord.id)
            ).all()
            s.expunge_all()
            return list(rows)

    def lines(self, batch_id: str) -> list[SettleLine]:
        return aggregate(self.members(batch_id))

    def batch(self, batch_id: str) -> SettlementBatchRecord | None:
        with self.db.session() as s:
            row = s.get(SettlementBatchRecord, batch_id)
            if row is not None:
                s.expunge(row)
            return row

    def open_batches(self) -> list[SettlementBatchRecord]:
        with self.db.session() as s:
            rows = s.scalars(
                select(SettlementBatchRecord)
                .where(SettlementBatchRecord.status == "open")
                .order_by(SettlementBatchRecord.created_at)
            ).all()
            s.expunge_all()
            return list(rows)

    # ----- the job ------------------------------------------------------------------------
    def submit(self, batch: SettlementBatchRecord) -> JobView:
        return self.jobs.submit(
            SETTLE_JOB,
            {"batch_id": batch.id},
            idempotency_key=f"{SETTLE_JOB}:{batch.id}:{batch.attempt}",
        )

    def tick(self) -> list[str]:
        """Restart batches whose job gave up, then batch what waits; the batch ids sent."""
        with self._tick_lock:
            return self._tick()

    def _tick(self) -> list[str]:
        sent: list[str] = []
        for batch in self.open_batches():
            job = self.jobs.store.by_key(f"{SETTLE_JOB}:{batch.id}:{batch.attempt}")
            if job is not None and job.status in ("failed", "cancelled"):
                with self.db.session() as s:
                    s.execute(
                        update(SettlementBatchRecord)
                        .where(SettlementBatchRecord.id == batch.id)
                        .values(attempt=batch.attempt + 1)
                    )
                batch.attempt += 1
                job = None
            if job is None:
                self.submit(batch)
                sent.append(batch.id)
        while (batch_id := self.open_batch()) is not None:
            batch = self.batch(batch_id)
            assert batch is not None
            self.submit(batch)
            sent.append(batch_id)
        return sent

    def send_step(self, batch_id: str) -> dict[str, Any]:
        """The job's one durable step: settle the batch at most once (see the module doc)."""
        with reaching_node():
            return self._send(batch_id)

    def _send(self, batch_id: str) -> dict[str, Any]:
        batch = self.batch(batch_id)
        if batch is None:
            return {"status": "gone"}
        if batch.status != "open":
            return {"status": batch.status, "resent": False}
        payments, sender = self.contracts()
        if payments.settled_at(batch_id):
            # Sent before a crash and mined: finish it from the chain, send nothing.
            self._mark_settled(payments, batch_id, self._mined_tx(payments, batch_id))
            return {"status": "settled", "resent": False}
        lines = self.lines(batch_id)
        try:
            result = sender.send(
                tx_key(batch_id), SETTLE_JOB, payments.settle_call(batch_id, lines)
            )
        except TxReverted as exc:
            if "BatchAlreadySettled" in exc.reason:
                self._mark_settled(payments, batch_id, self._mined_tx(payments, batch_id))
                return {"status": "settled", "resent": False}
            self._mark_failed(batch_id, exc.reason)
            return {"status": "failed", "error": exc.reason}
        self._mark_settled(payments, batch_id, (result.tx_hash, result.block, result.gas_used))
        return {"status": "settled", "tx_hash": result.tx_hash, "gas_used": result.gas_used}

    # ----- outcomes -----------------------------------------------------------------------
    def _mined_tx(self, payments: Payments, batch_id: str) -> tuple[str, int, int] | None:
        block = payments.settled_at(batch_id)
        for event in payments.batch_events(from_block=block):
            if event["batch_id"] == batch_id:
                receipt = payments.w3.eth.get_transaction_receipt(event["tx_hash"])
                return event["tx_hash"], int(receipt["blockNumber"]), int(receipt["gasUsed"])
        return None

    def _mark_settled(
        self, payments: Payments, batch_id: str, mined: tuple[str, int, int] | None
    ) -> None:
        unpaid = self._shortfalls(payments, mined[0]) if mined else {}
        members = self.members(batch_id)
        amounts: dict[tuple[str, str], int] = defaultdict(int)
        with self.ledger.settling(), self.db.session() as s:
            for c in members:
                row = s.get(ChargeRecord, c.id)
                assert row is not None
                key = (row.currency, int(row.token_id), row.payer)
                short = min(unpaid.get(key, 0), int(row.amount))
                if short:
                    unpaid[key] -= short
                    row.shortfall = str(short)
                row.status = "settled"
                amounts[(row.payer, row.currency)] += int(row.amount)
            s.execute(
                update(SettlementBatchRecord)
                .where(SettlementBatchRecord.id == batch_id)
                .values(
                    status="settled",
                    tx_hash=mined[0] if mined else None,
                    block=mined[1] if mined else None,
                    gas_used=mined[2] if mined else None,
                    settled_at=utcnow(),
                    error=None,
                )
            )
            s.flush()
            s.commit()
            self.ledger.settled(dict(amounts))
        log.info("settled batch %s (%d charges)", batch_id, len(members))

    def _shortfalls(self, payments: Payments, tx_hash: str) -> dict[tuple[str, int, str], int]:
        unpaid: dict[tuple[str, int, str], int] = defaultdict(int)
        for e in payments.shortfalls(tx_hash):
            token = e["token"]
            currency = "native" if int(token, 16) == 0 else token
            unpaid[(currency, int(e["agentId"]), e["payer"].lower())] += int(e["unpaid"])
        return unpaid

    def _mark_failed(self, batch_id: str, reason: str) -> None:
        """The contract refused the batch: report it, and give its charges to a new batch."""
        log.error("settlement batch %s was refused: %s", batch_id, reason)
        with self.db.session() as s:
            s.execute(
                update(SettlementBatchRecord)
                .where(SettlementBatchRecord.id == batch_id)
                .values(status="failed", error=reason[:500])
            )
            s.execute(
                update(ChargeRecord)
                .where(ChargeRecord.batch_id == batch_id)
                .values(status="unsettled", batch_id=None)
            )
