"""The economy's REST routes on eth-tester: contract info, test funds, prices and who may set
them, balances."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from agents.llm.pool import LLMPool
from container import Services, build_services
from tests.chain.helpers import fast_settings, mint_job_of, new_wallet, sign_in
from tests.economy.conftest import send_tx


@pytest.fixture(scope="module")
def svc(tmp_path_factory: pytest.TempPathFactory, llm_pool: LLMPool) -> Iterator[Services]:
    services = build_services(fast_settings(tmp_path_factory.mktemp("economy-api")), llm=llm_pool)
    services.chain.start(follow=False)
    yield services
    services.close()


@pytest.fixture(scope="module")
def client(svc: Services) -> TestClient:
    from app import create_app

    return TestClient(create_app(services=svc))


def test_test_funds_then_deposit_shows_in_the_balance(svc: Services, client: TestClient) -> None:
    info = client.get("/api/economy")
    assert info.status_code == 200, info.text
    assert info.json()["fee_bps"] == 0 and info.json()["stablecoin"]
    assert client.post("/api/economy/test-funds").status_code == 401
    wallet = new_wallet()
    sign_in(client, wallet)
    funded = client.post("/api/economy/test-funds", json={"native_wei": 10**18})
    assert funded.status_code == 200, funded.text
    w3 = svc.chain.chain.web3
    assert w3.eth.get_balance(wallet.address) >= 10**18
    payments = svc.economy.payments()
    coin = w3.eth.contract(address=info.json()["stablecoin"], abi=_erc20_abi())
    assert coin.functions.balanceOf(wallet.address).call() == 100_000_000
    send_tx(w3, wallet, payments.contract.functions.deposit(), value=12345)
    balance = client.get("/api/economy/balance").json()
    assert (balance["balance"], balance["available"], balance["reserved"]) == (
        "12345",
        "12345",
        "0",
    )
    stable = client.get("/api/economy/balance", params={"currency": info.json()["stablecoin"]})
    assert stable.json()["balance"] == "0"
    assert client.get("/api/economy/balance", params={"currency": "gold"}).status_code == 422
    client.post("/api/auth/logout")


def _erc20_abi() -> list:
    from chain.contract import load_artifact

    return load_artifact("TestStablecoin")["abi"]


def test_only_the_holder_prices_a_minted_agent(svc: Services, client: TestClient) -> None:
    draft = client.post("/api/agents", json={"name": "Draft"})  # nobody's, never minted
    assert draft.status_code == 201, draft.text
    price = {"prompt_per_1k": 5}
    unminted = client.put(f"/api/agents/{draft.json()['id']}/price", json=price)
    assert unminted.status_code == 422
    assert "mint the agent first" in unminted.json()["error"]["message"]

    owner, other = TestClient(client.app), TestClient(client.app)
    sign_in(owner, new_wallet())
    sign_in(other, new_wallet())
    agent = owner.post("/api/agents", json={"name": "Seer"}).json()["id"]
    assert mint_job_of(svc, agent).status == "succeeded"
    assert other.put(f"/api/agents/{agent}/price", json=price).status_code == 403
    assert client.put(f"/api/agents/{agent}/price", json=price).status_code == 401
    set_ = owner.put(f"/api/agents/{agent}/price", json=price)
    assert set_.status_code == 200, set_.text
    shown = other.get(f"/api/agents/{agent}/price").json()
    assert (shown["prompt_per_1k"], shown["currency"]) == (5, "native")
    income = other.get(f"/api/agents/{agent}/income").json()
    assert income["rows"] == [] and income["revenue_share"] is None
    assert income["account"] == svc.chain.status(agent).token_bound_account
    assert owner.put(f"/api/agents/{agent}/price", json={"currency": "gold"}).status_code == 422
