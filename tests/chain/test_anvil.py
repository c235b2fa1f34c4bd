"""The whole flow on a real node (anvil): mint through the API, gas, an outside client
(ethers), a transfer made with it, the node going down mid-mint, crashes mid-send, restarts.

The shared session anvil serves the tests that leave the node alone; the ones that kill or
restart a node let the app start and manage its own, as ``make run`` does.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

from agents.llm.pool import LLMPool
from chain.anvil_chain import AnvilChain
from chain.contract import token_id_of
from chain.records import ChainTxRecord
from chain.transactions import TxSender
from container import Services, build_services
from core.errors import ChainUnavailableError
from core.principal import SYSTEM, Principal
from tests.chain.helpers import fast_settings, mint_job_of, new_wallet, sign_in, wait_job
from tests.waiting import wait_until

ETHERS_CLIENT = Path(__file__).with_name("ethers_client.mjs")


@pytest.fixture
def shared_anvil_services(
    tmp_path: Path, llm_pool: LLMPool, anvil_node: AnvilChain
) -> Iterator[Services]:
    """The app on the session's anvil (its own contract, deployed by the first start)."""
    settings = fast_settings(tmp_path / "data", chain="anvil")
    svc = build_services(settings, llm=llm_pool, chain=anvil_node)
    svc.chain.start(follow=False)
    yield svc
    svc.close()


def _own_anvil_services(data_dir: Path, llm_pool: LLMPool, **overrides: object) -> Services:
    svc = build_services(fast_settings(data_dir, chain="anvil", **overrides), llm=llm_pool)
    svc.chain.start(follow=False)
    return svc


def _tx_records(services: Services, agent_id: str) -> list[ChainTxRecord]:
    with services.db.session() as s:
        return list(s.scalars(select(ChainTxRecord).where(ChainTxRecord.agent_id == agent_id)))


def _ethers(*args: str) -> dict[str, object]:
    done = subprocess.run(
        ["node", str(ETHERS_CLIENT), *args], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_mint_gas_ethers_reads_plain_erc721_and_a_transfer_by_ethers_moves_control(
    shared_anvil_services: Services, anvil_node: AnvilChain
) -> None:
    from app import create_app

    services = shared_anvil_services
    app: FastAPI = create_app(services=services)
    alice, bob = new_wallet(), new_wallet()
    as_alice, as_bob = TestClient(app), TestClient(app)
    sign_in(as_alice, alice)
    sign_in(as_bob, bob)
    gas, made = [], []
    for name in ("Ada", "Bea"):  # one after the other: the second finds Alice a holder
        created = as_alice.post("/api/agents", json={"name": name}).json()
        gas.append(mint_job_of(services, created["id"]).result["gas_used"])  # type: ignore[index]
        made.append(created)
    first = made[0]
    assert gas[0] <= 100_000, f"first mint to a new owner on anvil: {gas[0]}"
    assert gas[1] <= 80_000, f"mint to an existing holder on anvil: {gas[1]}"

    token = token_id_of(first["id"])
    contract = services.chain.info().contract
    assert contract is not None
    read = _ethers(anvil_node.rpc_url, contract, str(token), alice.address)
    assert read["name"] == "Anima Agents" and read["symbol"] == "ANIMA"
    assert read["balanceOfOwner"] == "2" and read["ownerOf"] == alice.address
    assert read["tokenURI"] == f"{services.settings.server.resolved_public_url}/api/nft/{token}"
    status = as_alice.get(f"/api/agents/{first['id']}/chain").json()
    assert read["royaltyReceiver"] == status["token_bound_account"]
    assert read["royaltyPer10000"] == str(services.settings.chain.royalty_bps)
    assert read["erc165"] and read["erc721"] and read["erc721Metadata"] and read["erc2981"]

    assert as_bob.patch(f"/api/agents/{first['id']}", json={"name": "B"}).status_code == 403
    anvil_node.fund(alice.address, 10**19)
    moved = _ethers(
        anvil_node.rpc_url, contract, str(token), alice.address, alice.key.hex(), bob.address
    )
    assert moved["transfer"]["status"] == 1 and moved["ownerAfter"] == bob.address  # type: ignore[index]
    assert as_alice.patch(f"/api/agents/{first['id']}", json={"name": "A"}).status_code == 403
    assert as_bob.patch(f"/api/agents/{first['id']}", json={"name": "Bob's"}).status_code == 200
    services.chain.sync()
    assert as_bob.get(f"/api/agents/{first['id']}").json()["owner_address"] == bob.address
    # The token-bound account is the same address: it follows the token, now Bob's.
    after = as_bob.get(f"/api/agents/{first['id']}/chain").json()
    assert after["owner"] == bob.address
    assert after["token_bound_account"] == status["token_bound_account"]


def test_mint_while_the_node_is_down_is_queued_then_minted_once(
    tmp_path: Path, llm_pool: LLMPool
) -> None:
    services = _own_anvil_services(tmp_path / "data", llm_pool, chain_tx_retries=6)
    try:
        grant = services.auth.create_local_wallet("password!", "testserver", "http://testserver")
        owner = grant.view.address
        node = services.chain.chain
        assert isinstance(node, AnvilChain)
        time.sleep(1.5)  # anvil writes its state every second; a crash loses at most that
        node.kill()  # the node crashes
        agent = services.agents.create_agent({"name": "Offline"}, owner=owner, principal=SYSTEM)
        job = services.chain.mint_job(agent.id)
        assert job is not None and agent.mint_state == "pending"
        wait_until(
            lambda: (
                "waiting for the chain node" in services.jobs.get(job.id, principal=SYSTEM).message
            ),
            interval=0.1,
            message=lambda: (
                f"the job to wait for the node: {services.jobs.get(job.id, principal=SYSTEM)}"
            ),
        )
        assert not services.jobs.get(job.id, principal=SYSTEM).finished
        node.start()  # the node comes back with its state
        done = wait_job(services, job.id)
        assert done.status == "succeeded", done.error
        nft = services.chain.ensure_started()
        assert nft.owner_of(token_id_of(agent.id)) == owner
        assert nft.contract.functions.balanceOf(owner).call() == 1
        sent = _tx_records(services, agent.id)
        assert [r.status for r in sent] == ["mined"]
        # The step runs again (as after a crash before its checkpoint): nothing is resent.
        again = services.chain.mint_step(agent.id, owner, f"{job.id}:mint")
        assert again["already_minted"] is True and len(_tx_records(services, agent.id)) == 1
    finally:
        services.close()


def test_a_send_cut_off_after_recording_resends_the_same_transaction(
    shared_anvil_services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    services = shared_anvil_services
    owner = new_wallet().address
    services.settings.chain.mint_on_create = False
    agent = services.agents.create_agent({"name": "Once"}, owner=owner, principal=SYSTEM)
    real = TxSender._broadcast

    def dies_before_sending(self: TxSender, record: ChainTxRecord) -> None:
        raise ConnectionError("process killed between recording and broadcasting")

    monkeypatch.setattr(TxSender, "_broadcast", dies_before_sending)
    with pytest.raises(ChainUnavailableError):
        services.chain.mint_step(agent.id, owner, "job-1:mint")
    [recorded] = _tx_records(services, agent.id)
    assert recorded.status == "recorded"
    monkeypatch.setattr(TxSender, "_broadcast", real)
    result = services.chain.mint_step(agent.id, owner, "job-1:mint")
    assert result["tx_hash"] == recorded.tx_hash  # the very same signed bytes
    assert [r.status for r in _tx_records(services, agent.id)] == ["mined"]
    # A mint request for a minted agent never sends a second transaction.
    again = services.chain.mint_step(agent.id, owner, "job-2:mint")
    assert again["already_minted"] is True and len(_tx_records(services, agent.id)) == 1
    principal = Principal(address=owner, via="session")
    assert services.chain.require_owner(principal, agent.id).mint_state == "minted"


def test_node_and_app_restarts_keep_every_token(tmp_path: Path, llm_pool: LLMPool) -> None:
    data = tmp_path / "data"
    services = _own_anvil_services(data, llm_pool)
    try:
        grant = services.auth.create_local_wallet("password!", "testserver", "http://testserver")
        owner = grant.view.address
        agent = services.agents.create_agent({"name": "Kept"}, owner=owner, principal=SYSTEM)
        assert mint_job_of(services, agent.id).status == "succeeded"
        contract = services.chain.ensure_started().address
        node = services.chain.chain
        node.stop()  # a clean stop writes the state file
        assert not node.is_up()
        services.chain.tick()  # the app's watchdog brings its node back
        assert node.is_up()
        assert services.chain.ensure_started().owner_of(token_id_of(agent.id)) == owner
    finally:
        services.close()  # stops the node

    restarted = _own_anvil_services(data, llm_pool)
    try:
        nft = restarted.chain.ensure_started()
        assert nft.address == contract  # the recorded deployment is reused, not redeployed
        assert nft.owner_of(token_id_of(agent.id)) == owner
        status = restarted.chain.status(agent.id)
        assert status.minted and status.owner == owner and status.matches is True
    finally:
        restarted.close()
