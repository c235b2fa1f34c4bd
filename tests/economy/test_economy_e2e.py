"""Paid use end to end on anvil: an owner prices a minted agent, two developers' API keys use it
concurrently through ``/v1``, a wallet without enough balance gets 402 before anything is
generated, the settlement is cut short after its transaction was sent (as a ``kill -9``
would), the app restarts and finishes it without sending again, and the chain's sums equal the
usage records to the wei.

The model is a scripted backend (what is tested is paying, not generating): each reply
reports 40 prompt and 10 completion tokens and can be held open, so streams are in flight
while other requests arrive.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from eth_account.signers.local import LocalAccount
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from agents.llm.base import StreamResult
from agents.llm.pool import LLMPool
from agents.schema import ChatMessage, GenerationSettings
from chain.anvil_chain import AnvilChain
from chain.contract import token_id_of
from chain.records import ChainTxRecord
from container import Services, build_services
from core.principal import SYSTEM
from core.settings import Settings
from economy.audit import audit
from economy.prices import Price
from economy.records import NATIVE, ChargeRecord, SettlementBatchRecord
from economy.settlement import SETTLE_JOB, tx_key
from tests.chain.helpers import fast_settings, mint_job_of, new_wallet, sign_in
from tests.economy.conftest import send_tx
from tests.fake_backends import ScriptedBackend
from tests.servers import serve_app
from tests.waiting import wait_until
from usage.records import UsageRecord

PROMPT, COMPLETION = 40, 10
PRICE = {"currency": "native", "prompt_per_1k": 1000, "completion_per_1k": 3000}
MAX_TOKENS = 16
# Worst case held per request: (2048 - 16) prompt tokens at 1 wei + 16 at 3 wei.
WORST = (2048 - MAX_TOKENS) * 1000 // 1000 + MAX_TOKENS * 3000 // 1000
COST = PROMPT * 1000 // 1000 + COMPLETION * 3000 // 1000  # 70 wei per reply
ASK = [{"role": "user", "content": "Hello there"}]


class _Gate(ScriptedBackend):
    """Replies "Hello there" with fixed usage; while ``open`` is clear, replies wait mid-way."""

    def __init__(self) -> None:
        self.open = threading.Event()
        self.open.set()
        self.waiting = 0
        self._lock = threading.Lock()

    def stream(
        self, messages: list[ChatMessage], params: GenerationSettings, result: Any = None
    ) -> Iterator[str]:
        if isinstance(result, StreamResult):
            result.prompt_tokens, result.completion_tokens = PROMPT, COMPLETION
        yield "Hello"
        with self._lock:
            self.waiting += 1
        self.open.wait(timeout=60)
        with self._lock:
            self.waiting -= 1
        yield " there"


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return fast_settings(
        tmp_path_factory.mktemp("economy-data"),
        payments_settle_interval_s=3600,  # the test settles by hand
        payments_balance_cache_s=0,
    )


def start(
    settings: Settings,
    llm_pool: LLMPool,
    anvil: AnvilChain,
    gate: _Gate,
    monkeypatch: pytest.MonkeyPatch,
) -> Services:
    svc = build_services(settings, llm=llm_pool, chain=anvil)
    svc.chain.start(follow=False)
    # The gate answers unscheduled, so streams run side by side; through monkeypatch, so the
    # session's shared pool answers with the real model again after this test.
    monkeypatch.setattr(svc.chat.llm, "get", lambda model=None, adapter=None: gate)
    return svc


def deposit(svc: Services, who: LocalAccount, wei: int, anvil: AnvilChain) -> None:
    anvil.fund(who.address, wei + 10**18)
    payments = svc.economy.payments()
    receipt = send_tx(payments.w3, who, payments.contract.functions.deposit(), value=wei)
    assert receipt["status"] == 1


def key_for(client: TestClient) -> str:
    made = client.post("/api/auth/keys", json={"name": "dev"})
    assert made.status_code == 201, made.text
    return made.json()["key"]


def call(server: str, key: str, model: str, stream: bool = False) -> httpx.Response:
    body = {"model": model, "messages": ASK, "max_tokens": MAX_TOKENS, "stream": stream}
    return httpx.post(
        f"{server}/v1/chat/completions",
        json=body,
        headers={"Authorization": f"Bearer {key}"},
        timeout=60,
    )


def charges(svc: Services) -> list[ChargeRecord]:
    with svc.db.session() as s:
        rows = list(s.scalars(select(ChargeRecord)).all())
        s.expunge_all()
        return rows


def test_two_developers_pay_a_priced_agent_and_a_restart_mid_batch_loses_nothing(
    settings: Settings,
    llm_pool: LLMPool,
    anvil_node: AnvilChain,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    gate = _Gate()
    svc = start(settings, llm_pool, anvil_node, gate, monkeypatch)
    from app import create_app

    app = create_app(services=svc)
    owner_wallet, alice_wallet, bob_wallet, carol_wallet = (new_wallet() for _ in range(4))
    owner, alice, bob, carol = (TestClient(app) for _ in range(4))
    pairs = ((owner, owner_wallet), (alice, alice_wallet), (bob, bob_wallet), (carol, carol_wallet))
    for client, wallet in pairs:
        sign_in(client, wallet)

    # The owner creates an agent (minted to them at once) and prices it.
    made = owner.post("/api/agents", json={"name": "Oracle", "description": "Paid advice."})
    assert made.status_code == 201, made.text
    agent = made.json()["id"]
    assert mint_job_of(svc, agent).status == "succeeded"
    assert owner.get(f"/api/agents/{agent}/price").json()["prompt_per_1k"] == 0  # free first
    assert alice.put(f"/api/agents/{agent}/price", json=PRICE).status_code == 403
    priced = owner.put(f"/api/agents/{agent}/price", json=PRICE)
    assert priced.status_code == 200, priced.text

    alice_key, bob_key, carol_key, owner_key = (key_for(c) for c in (alice, bob, carol, owner))
    # Alice can pay for exactly two requests' worst case at a time; Bob for many.
    deposit(svc, alice_wallet, 2 * WORST + WORST // 2, anvil_node)
    deposit(svc, bob_wallet, 100 * WORST, anvil_node)

    with serve_app(app) as server:
        # Carol has no balance: 402 before anything is generated, in the OpenAI error shape.
        refused = call(server, carol_key, agent)
        assert refused.status_code == 402, refused.text
        error = refused.json()["error"]
        assert error["type"] == "PaymentRequiredError"
        assert error["balance"] == "0" and error["required"] == str(WORST)
        assert error["price"]["prompt_per_1k"] == 1000
        assert gate.waiting == 0

        # The conversation routes cannot reach a priced agent for free with a key.
        auth = {"Authorization": f"Bearer {alice_key}"}
        chat = httpx.post(f"{server}/api/agents/{agent}/conversations", json={}, headers=auth)
        assert chat.status_code == 201, chat.text
        sent = httpx.post(
            f"{server}/api/conversations/{chat.json()['id']}/messages",
            json={"content": "Hi"},
            headers=auth,
            timeout=60,
        )
        assert sent.status_code == 402, sent.text
        assert "/v1/chat/completions" in sent.json()["error"]["message"]
        assert gate.waiting == 0

        # Alice opens two streams and holds them; a third request cannot overspend.
        gate.open.clear()
        with ThreadPoolExecutor(max_workers=8) as pool:
            streams = [pool.submit(call, server, alice_key, agent, True) for _ in range(2)]
            wait_until(lambda: gate.waiting == 2, timeout=30, message="two streams in flight")
            third = call(server, alice_key, agent)
            assert third.status_code == 402, third.text
            assert third.json()["error"]["reserved"] == str(2 * WORST)
            # Bob's requests run beside Alice's streams; the owner's own use is free.
            bobs = [pool.submit(call, server, bob_key, agent) for _ in range(4)]
            mine = pool.submit(call, server, owner_key, agent)
            wait_until(lambda: gate.waiting == 7, timeout=30, message="all replies running")
            # A price change now applies to new requests only: the running ones keep theirs.
            double = {**PRICE, "prompt_per_1k": 2000}
            assert owner.put(f"/api/agents/{agent}/price", json=double).status_code == 200
            gate.open.set()
            assert [s.result().status_code for s in streams] == [200, 200]
            assert [b.result().status_code for b in bobs] == [200] * 4
            assert mine.result().status_code == 200
        after = call(server, bob_key, agent)  # at the new price
        assert after.status_code == 200, after.text

    wait_until(lambda: len(charges(svc)) == 7, timeout=30, message="seven charges")
    rows = charges(svc)
    by_payer: dict[str, list[int]] = {}
    for c in rows:
        by_payer.setdefault(c.payer, []).append(int(c.amount))
    new_cost = PROMPT * 2 + COMPLETION * 3
    assert sorted(by_payer[alice_wallet.address.lower()]) == [COST, COST]
    assert sorted(by_payer[bob_wallet.address.lower()]) == [COST] * 4 + [new_cost]
    assert owner_wallet.address.lower() not in by_payer
    assert carol_wallet.address.lower() not in by_payer
    balance = alice.get("/api/economy/balance").json()
    assert balance["unsettled"] == str(2 * COST) and balance["reserved"] == "0"

    # Settlement, cut short: the batch is written and its transaction mined, then the process
    # dies before marking it settled.
    svc.usage.flush()
    economy = svc.economy
    batch_id = economy.settlement.open_batch()
    assert batch_id is not None
    payments, sender = economy.contracts()
    lines = economy.settlement.lines(batch_id)
    sender.send(tx_key(batch_id), SETTLE_JOB, payments.settle_call(batch_id, lines))
    assert payments.settled_at(batch_id) > 0
    svc.close()

    # Restart on the same data and chain: the open batch is found settled on chain and
    # marked so, without a second transaction.
    svc = start(settings, llm_pool, anvil_node, gate, monkeypatch)
    assert svc.economy.settle_now() == [batch_id]
    job = svc.jobs.store.by_key(f"{SETTLE_JOB}:{batch_id}:0")
    assert job is not None
    done = svc.jobs.wait(job.id, timeout=60, principal=SYSTEM)
    assert done.status == "succeeded", done.error
    assert done.result == {"status": "settled", "resent": False}
    with svc.db.session() as s:
        sent = s.scalars(select(ChainTxRecord).where(ChainTxRecord.key == tx_key(batch_id))).all()
        assert len(sent) == 1
        assert s.get(SettlementBatchRecord, batch_id).status == "settled"  # type: ignore[union-attr]
    assert svc.economy.settle_now() == []  # nothing left, nothing sent twice

    # The chain equals the usage records, to the wei.
    payments = svc.economy.payments()
    with svc.db.session() as s:
        usage = s.scalars(select(UsageRecord).where(UsageRecord.agent_id == agent)).all()
        paid = [u for u in usage if u.address and u.address.lower() in by_payer]
        assert len(paid) == 7
    expected = {payer: sum(int(c.amount) for c in rows if c.payer == payer) for payer in by_payer}
    # Each paid usage record, at the price its charge recorded: six at the old price (70 wei),
    # one at the new (110 wei).
    price_of = {c.id: c for c in rows}
    from_usage = sum(
        Price(
            prompt_per_1k=int(price_of[u.id].prompt_per_1k),
            completion_per_1k=int(price_of[u.id].completion_per_1k),
        ).cost(u.prompt_tokens, u.completion_tokens)
        for u in paid
    )
    assert from_usage == 6 * COST + new_cost
    account = svc.chain.ensure_started().token_account(token_id_of(agent))
    assert payments.w3.eth.get_balance(account) == sum(expected.values()) == 6 * COST + new_cost
    assert payments.balance_of(alice_wallet.address, NATIVE) == 2 * WORST + WORST // 2 - 2 * COST
    assert payments.balance_of(bob_wallet.address, NATIVE) == 100 * WORST - 4 * COST - new_cost
    report = audit(svc.db, payments, svc.economy.owners())
    assert report.ok, report.text()
    assert report.settled_amount == {NATIVE: 6 * COST + new_cost}

    # The REST views agree.
    client = TestClient(create_app(services=svc))
    assert client.get("/api/economy/spend").status_code == 401
    sign_in(client, bob_wallet)
    bob_total = str(expected[bob_wallet.address.lower()])
    assert [
        (r["agent_id"], r["amount"], r["settled"]) for r in client.get("/api/economy/spend").json()
    ] == [(agent, bob_total, bob_total)]
    income = client.get(f"/api/agents/{agent}/income").json()
    assert income["account"] == account
    assert sum(int(r["amount"]) for r in income["rows"]) == 6 * COST + new_cost

    # A paid request without its charge is found, and so is a tampered charge; the audit
    # command then exits with 1.
    with svc.db.session() as s:
        s.add(
            UsageRecord(
                id="missing-charge",
                created_at=datetime.now(UTC),
                key_id=None,
                address=bob_wallet.address,
                agent_id=agent,
                route="v1.chat",
                prompt_tokens=PROMPT,
                completion_tokens=COMPLETION,
                latency_ms=5,
                outcome="ok",
            )
        )
    found = audit(svc.db, payments, svc.economy.owners())
    assert [d for d in found.differences if "missing-charge" in d] == [
        f"usage record missing-charge (v1.chat, agent {agent}) has no charge"
    ]
    with svc.db.session() as s:
        s.execute(update(ChargeRecord).where(ChargeRecord.id == rows[0].id).values(amount="1"))
    from economy import commands

    monkeypatch.setattr("container.build_services", lambda _settings: svc)
    assert commands.main(["audit"], settings) == 1
