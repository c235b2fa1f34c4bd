"""Sending a transaction exactly once, across crashes, retries and a node that is down.

A job step that sends a transaction can die after the node accepted it but before dbos
checkpointed the step; the step then runs again. ``TxSender.send`` makes that safe: it signs
once, records the signed bytes under the step's idempotency key *before* broadcasting, and a
re-run finds the record and broadcasts the very same bytes (same hash, same nonce: the node
mines it at most once). Only when that transaction provably lost its nonce to another one
(the account's nonce moved past it and it has no receipt) is a new one signed. Callers check
the chain's state first as well (a mint that already happened is not sent again at all).

Nonces: a process lock serialises signing per sender, and the unique (chain, sender, nonce)
row stops two worker processes sharing one minter key from signing with the same nonce.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC
from typing import Any

import requests
from eth_account.signers.local import LocalAccount
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from web3 import Web3
from web3.contract.contract import ContractFunction
from web3.exceptions import (
    ProviderConnectionError,
    TimeExhausted,
    TransactionNotFound,
)

from chain.contract import REVERTS, describe_revert
from chain.records import ChainTxRecord, utcnow
from core.db import Database
from core.errors import ChainError, ChainUnavailableError

log = logging.getLogger(__name__)

# Errors that mean "the node did not answer": worth retrying later.
TRANSIENT = (
    requests.exceptions.ConnectionError,
    requests.exceptions.Timeout,
    ProviderConnectionError,
    ConnectionError,
    TimeoutError,
)
DEFAULT_PRIORITY_FEE = 10**9  # 1 gwei when the node cannot suggest one
# A transaction recorded but not broadcast for this long belongs to a process that died.
STALE_RECORD_S = 30.0


class TxReverted(ChainError):
    """The contract refused the transaction (permanent: retrying cannot help)."""

    def __init__(self, reason: str, tx_hash: str | None = None) -> None:
        super().__init__(f"the contract refused the transaction: {reason}")
        self.reason = reason
        self.tx_hash = tx_hash


@dataclass(frozen=True)
class TxResult:
    tx_hash: str
    block: int
    gas_used: int


@contextmanager
def reaching_node(message: str | None = None) -> Iterator[None]:
    """The one place where a failure to reach the node becomes ``ChainUnavailableError``
    (503, retried by jobs); ``message`` replaces the default wording. Contract errors and
    bugs pass through unchanged."""
    try:
        yield
    except TRANSIENT as exc:
        raise ChainUnavailableError(message or f"the chain node is unreachable: {exc}") from exc


class TxSender:
    """Signs with one local account and sends each keyed transaction at most once."""

    def __init__(self, w3: Web3, account: LocalAccount, db: Database, chain_id: int) -> None:
        self.w3 = w3
        self.account = account
        self.db = db
        self.chain_id = chain_id
        self._lock = threading.Lock()

    @property
    def address(self) -> str:
        return self.account.address

    def send(
        self,
        key: str,
        kind: str,
        call: ContractFunction,
        *,
        agent_id: str | None = None,
        wait_s: float = 60.0,
    ) -> TxResult:
        """Send ``call`` once under ``key`` and wait for it to be mined.

        Raises ``TxReverted`` when the contract refuses it (at estimation or on chain) and
        ``ChainUnavailableError`` when the node cannot be reached (the caller retries).
        """
        with reaching_node():
            record = self._latest(key)
            if record is not None and record.status in ("recorded", "sent", "mined"):
                result = self._resume(record, wait_s)
                if result is not None:
                    return result
            record = self._sign_and_record(key, kind, call, agent_id)
            self._broadcast(record)
            return self._wait(record, wait_s)

    # ----- internals ------------------------------------------------------------------------
    def _resume(self, record: ChainTxRecord, wait_s: float) -> TxResult | None:
        """Finish a transaction recorded by an earlier run; ``None``: it lost its nonce."""
        receipt = self._receipt(record.tx_hash)
        if receipt is None:
            try:
                self._broadcast(record)
            except TxReverted:
                raise
            except ValueError as exc:  # "nonce too low", "already known", ...
                log.info("re-broadcast of %s answered: %s", record.tx_hash, exc)
            try:
                return self._wait(record, wait_s)
            except ChainUnavailableError:
                if self._nonce_taken(record):
                    self._set_status(record, "dropped")
                    return None
                raise
        return self._finish(record, receipt)

    def _sign_and_record(
        self, key: str, kind: str, call: ContractFunction, agent_id: str | None
    ) -> ChainTxRecord:
        sender = self.account.address
        with self._lock:
            for _attempt in range(20):
                nonce = self.w3.eth.get_transaction_count(sender, "pending")
                tx = self._build(call, nonce)
                signed = self.account.sign_transaction(tx)
                record = ChainTxRecord(
                    id=uuid.uuid4().hex,
                    key=key,
                    kind=kind,
                    agent_id=agent_id,
                    chain_id=self.chain_id,
                    sender=sender,
                    nonce=nonce,
                    tx_hash="0x" + signed.hash.hex().removeprefix("0x"),
                    raw="0x" + signed.raw_transaction.hex().removeprefix("0x"),
                    status="recorded",
                )
                try:
                    with self.db.session() as s:
                        s.add(record)
                    return record
                except IntegrityError:
                    # Another process holds this nonce and has not broadcast it yet: wait a
                    # beat; a record that was never broadcast for long gives its nonce up.
                    self._release_if_stale(sender, nonce)
                    time.sleep(0.2)
            raise ChainUnavailableError("could not allocate a nonce for the minter account")

    def _release_if_stale(self, sender: str, nonce: int) -> None:
        """Free a nonce whose transaction was recorded but never broadcast (its process died).

        Its job, when it resumes, finds the record dropped and signs afresh; if it broadcasts
        the old bytes first, the node accepts only one of the two and the other job sees its
        nonce taken. Either way at most one transaction per nonce is mined.
        """
        with self.db.session() as s:
            held = s.scalars(
                select(ChainTxRecord).where(
                    ChainTxRecord.chain_id == self.chain_id,
                    ChainTxRecord.sender == sender,
                    ChainTxRecord.nonce == nonce,
                )
            ).first()
            if held is None or held.status != "recorded":
                return
            created = (
                held.created_at if held.created_at.tzinfo else held.created_at.replace(tzinfo=UTC)
            )
            if (utcnow() - created).total_seconds() < STALE_RECORD_S:
                return
            held.status = "dropped"
            held.nonce = -1 - held.nonce  # keeps the unique constraint; marks it released
            held.updated_at = utcnow()

    def _build(self, call: ContractFunction, nonce: int) -> dict[str, Any]:
        params: dict[str, Any] = {"from": self.account.address, "nonce": nonce}
        params.update(self._fees())
        try:
            gas = call.estimate_gas({"from": self.account.address})
        except REVERTS as exc:
            raise TxReverted(describe_revert(exc)) from exc
        params["gas"] = int(gas * 1.25) + 10_000
        params["chainId"] = self.chain_id
        return call.build_transaction(params)

    def _fees(self) -> dict[str, int]:
        block = self.w3.eth.get_block("latest")
        base = block.get("baseFeePerGas")
        if base is None:
            return {"gasPrice": int(self.w3.eth.gas_price)}
        try:
            tip = int(self.w3.eth.max_priority_fee)
        except Exception:  # not every node implements eth_maxPriorityFeePerGas
            tip = DEFAULT_PRIORITY_FEE
        return {"maxFeePerGas": 2 * int(base) + tip, "maxPriorityFeePerGas": tip}

    def _broadcast(self, record: ChainTxRecord) -> None:
        try:
            self.w3.eth.send_raw_transaction(record.raw)
        except REVERTS as exc:
            self._set_status(record, "reverted")
            raise TxReverted(describe_revert(exc), record.tx_hash) from exc
        except ValueError as exc:
            text = str(exc).lower()
            if "already" in text or "known" in text:
                pass  # the node has it: the same bytes were broadcast before
            else:
                raise
        if record.status == "recorded":
            self._set_status(record, "sent")

    def _wait(self, record: ChainTxRecord, wait_s: float) -> TxResult:
        try:
            receipt = self.w3.eth.wait_for_transaction_receipt(
                record.tx_hash, timeout=wait_s, poll_latency=0.05
            )
        except TimeExhausted as exc:
            raise ChainUnavailableError(
                f"transaction {record.tx_hash} not mined within {wait_s:.0f} s"
            ) from exc
        return self._finish(record, receipt)

    def _finish(self, record: ChainTxRecord, receipt: Any) -> TxResult:
        block, gas = int(receipt["blockNumber"]), int(receipt["gasUsed"])
        with self.db.session() as s:
            s.execute(
                update(ChainTxRecord)
                .where(ChainTxRecord.id == record.id)
                .values(
                    status="mined" if receipt["status"] == 1 else "reverted",
                    block=block,
                    gas_used=gas,
                    updated_at=utcnow(),
                )
            )
        if receipt["status"] != 1:
            raise TxReverted(self._revert_reason(record, block), record.tx_hash)
        return TxResult(tx_hash=record.tx_hash, block=block, gas_used=gas)

    def _revert_reason(self, record: ChainTxRecord, block: int) -> str:
        """Replay a reverted transaction as a call to read its error."""
        try:
            tx = self.w3.eth.get_transaction(record.tx_hash)
            self.w3.eth.call({"from": tx["from"], "to": tx["to"], "data": tx["input"]}, block - 1)
        except REVERTS as exc:
            return describe_revert(exc)
        except Exception as exc:
            return f"reverted ({exc})"
        return "reverted"

    def _receipt(self, tx_hash: str) -> Any | None:
        try:
            return self.w3.eth.get_transaction_receipt(tx_hash)
        except TransactionNotFound:
            return None

    def _nonce_taken(self, record: ChainTxRecord) -> bool:
        """The account's mined nonce moved past ours while ours has no receipt."""
        mined = self.w3.eth.get_transaction_count(record.sender, "latest")
        return mined > record.nonce and self._receipt(record.tx_hash) is None

    def _latest(self, key: str) -> ChainTxRecord | None:
        with self.db.session() as s:
            return s.scalars(
                select(ChainTxRecord)
                .where(ChainTxRecord.key == key)
                .order_by(ChainTxRecord.created_at.desc())
                .limit(1)
            ).first()

    def _set_status(self, record: ChainTxRecord, status: str) -> None:
        record.status = status
        with self.db.session() as s:
            s.execute(
                update(ChainTxRecord)
                .where(ChainTxRecord.id == record.id)
                .values(status=status, updated_at=utcnow())
            )
