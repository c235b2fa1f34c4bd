"""Reservations under concurrency, and settlement that is refused or meets a node that is down:
reported, retried, and never charging anyone twice."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from eth_account.signers.local import LocalAccount
from sqlalchemy import select

from agents.llm.pool import LLMPool
from chain.anvil_chain import AnvilChain
from chain.contract import token_id_of
from chain.records import ChainTxRecord
from container import Services, build_services
from core.db import Database
from core.principal import SYSTEM
from economy.contract import Payments
from economy.ledger import Ledger, Reservation
from economy.prices import Price
from economy.records import NATIVE, ChargeRecord, SettlementBatchRecord
from economy.settlement import SETTLE_JOB, tx_key
from tests.chain.helpers import fast_settings, new_wallet
from tests.economy.conftest import send_tx

PRICE = Price(prompt_per_1k=1000, completion_per_1k=1000)


def test_concurrent_reservations_never_hold_more_than_the_balance(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'ledger.db'}")
    db.migrate()
    ledger = Ledger(db, lambda _payer, _currency: 1000, cache_s=60)
    held: list[Reservation] = []
    lock = threading.Lock()
    start = threading.Barrier(50)

    def try_once() -> None:
        r = Reservation("0xabc", NATIVE, 30, PRICE, "a" * 32, 1, None)
        start.wait()
        if ledger.reserve(r) is None:
            with lock:
                held.append(r)

    threads = [threading.Thread(target=try_once) for _ in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(held) == 33  # 33 * 30 = 990 of 1000
    state = ledger.state("0xabc", NATIVE)
    assert (state.reserved, state.available) == (990, 10)
    # A finished reply turns its reservation into its (smaller) charge; others are released.
    row = ChargeRecord(
        id="r1", payer="0xabc", agent_id="a" * 32, token_id="1", currency=NATIVE,
        prompt_per_1k="1000", completion_per_1k="1000", speech_per_minute="0", amount="7",
    )  # fmt: skip
    ledger.charge(held[0], row)
    ledger.release(held[1])
    ledger.release(held[1])  # twice is once
    state = ledger.state("0xabc", NATIVE)
    assert (state.reserved, state.unsettled, state.available) == (930, 7, 63)


def _services(tmp: Path, llm_pool: LLMPool, chain: AnvilChain | None = None) -> Services:
    svc = build_services(
        fast_settings(tmp, payments_settle_interval_s=3600), llm=llm_pool, chain=chain
    )
    svc.chain.start(follow=False)
    return svc


def _charge(svc: Services, payer: LocalAccount, agent_id: str, n: int) -> int:
    """``n`` finished requests of ``payer`` (40 + 10 tokens each); their total."""
    total = 0
    for _ in range(n):
        r = Reservation(
            payer.address.lower(), NATIVE, 10**6, PRICE, agent_id, token_id_of(agent_id), None
        )
        assert svc.economy.ledger.reserve(r) is None
        total += svc.economy.charge(r, os.urandom(16).hex(), prompt_tokens=40, completion_tokens=10)
    return total


def _fund(svc: Services, payer: LocalAccount, wei: int) -> Payments:
    payments = svc.economy.payments()
    svc.chain.chain.fund(payer.address, wei + 10**18)
    receipt = send_tx(payments.w3, payer, payments.contract.functions.deposit(), value=wei)
    assert receipt["status"] == 1
    return payments


def _wait_batch(svc: Services, batch_id: str, attempt: int = 0) -> str:
    job = svc.jobs.store.by_key(f"{SETTLE_JOB}:{batch_id}:{attempt}")
    assert job is not None
    return svc.jobs.wait(job.id, timeout=90, principal=SYSTEM).status


@pytest.fixture
def tester_services(tmp_path: Path, llm_pool: LLMPool) -> Iterator[Services]:
    svc = _services(tmp_path, llm_pool)
    yield svc
    svc.close()


def test_a_refused_settlement_is_reported_and_settled_again_once(
    tester_services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    svc, payer, agent = tester_services, new_wallet(), os.urandom(16).hex()
    payments = _fund(svc, payer, 10**9)
    total = _charge(svc, payer, agent, 3)
    assert total == 150
    good = Payments.settle_call

    def broken(self: Payments, batch_id: str, lines: list) -> object:  # arrays that disagree
        return self.contract.functions.settle(
            bytes.fromhex(batch_id[2:]), [payer.address], [], [], []
        )

    monkeypatch.setattr(Payments, "settle_call", broken)
    [first] = svc.economy.settle_now()
    assert _wait_batch(svc, first) == "failed"
    with svc.db.session() as s:
        batch = s.get(SettlementBatchRecord, first)
        assert batch is not None and batch.status == "failed"
        assert "LengthMismatch" in (batch.error or "")
        statuses = s.scalars(select(ChargeRecord.status)).all()
        assert sorted(statuses) == ["unsettled"] * 3
    assert payments.settled_at(first) == 0
    monkeypatch.setattr(Payments, "settle_call", good)
    [second] = svc.economy.settle_now()
    assert second != first
    assert _wait_batch(svc, second) == "succeeded"
    account = svc.chain.ensure_started().token_account(token_id_of(agent))
    assert payments.w3.eth.get_balance(account) == total
    assert payments.balance_of(payer.address, NATIVE) == 10**9 - total
    assert svc.economy.settle_now() == []
    state = svc.economy.ledger.state(payer.address, NATIVE)
    assert (state.unsettled, state.balance) == (0, 10**9 - total)


def test_settlement_waits_for_a_node_that_is_down(tmp_path: Path, llm_pool: LLMPool) -> None:
    node = AnvilChain(state_file=tmp_path / "node" / "anvil-state.json")
    node.start()
    svc = _services(tmp_path / "data", llm_pool, chain=node)
    try:
        payer, agent = new_wallet(), os.urandom(16).hex()
        payments = _fund(svc, payer, 10**9)
        total = _charge(svc, payer, agent, 2)
        node.stop()
        [batch_id] = svc.economy.settle_now()
        back = threading.Timer(1.5, node.start)  # the node returns while the job retries
        back.start()
        assert _wait_batch(svc, batch_id) == "succeeded"
        back.join()
        with svc.db.session() as s:
            assert s.get(SettlementBatchRecord, batch_id).status == "settled"  # type: ignore[union-attr]
            sent = s.scalars(
                select(ChainTxRecord).where(ChainTxRecord.key == tx_key(batch_id))
            ).all()
            assert len(sent) == 1
        account = svc.chain.ensure_started().token_account(token_id_of(agent))
        assert payments.w3.eth.get_balance(account) == total == 100
    finally:
        svc.close()
        node.stop()
