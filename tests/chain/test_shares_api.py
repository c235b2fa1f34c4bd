"""Issuing an agent's revenue shares and claiming them, through the API, on an in-process
chain: only the agent's holder issues; holders come from the chain; a claim is built for the
holder's own wallet and refused with a sentence when it would revert; the token's metadata
links a fetchable image and shows the revenue share."""

from __future__ import annotations

import io
from typing import Any
from urllib.parse import urlsplit

from eth_account.signers.local import LocalAccount
from fastapi import FastAPI
from fastapi.testclient import TestClient
from PIL import Image
from web3 import Web3

from container import Services
from economy.shares_contract import AgentSharesContract
from tests.chain.helpers import mint_job_of, new_wallet, sign_in

ISSUE = {"supply": 1000, "name": "Ivy shares", "symbol": "IVY", "revenue_bps": 2500}


def _minted_agent(services: Services, client: TestClient, name: str) -> dict[str, Any]:
    created = client.post("/api/agents", json={"name": name, "description": "keeps bees"})
    assert created.status_code == 201, created.text
    job = mint_job_of(services, created.json()["id"])
    assert job.status == "succeeded", job.error
    return client.get(f"/api/agents/{created.json()['id']}").json()


def _send(services: Services, account: LocalAccount, tx: dict[str, Any]) -> Any:
    """Sign and send ``tx`` ({to, data, value}) from ``account``, as a wallet would."""
    w3 = services.chain.chain.web3
    services.chain.chain.fund(account.address, 10**19)
    full = {
        "to": Web3.to_checksum_address(tx["to"]),
        "data": tx.get("data", "0x"),
        "value": int(tx.get("value", "0x0"), 16) if isinstance(tx.get("value"), str) else 0,
        "nonce": w3.eth.get_transaction_count(account.address),
        "chainId": w3.eth.chain_id,
        "gas": 300_000,
        "maxFeePerGas": 2 * w3.eth.get_block("latest")["baseFeePerGas"] + 10**9,
        "maxPriorityFeePerGas": 10**9,
    }
    raw = account.sign_transaction(full).raw_transaction
    receipt = w3.eth.wait_for_transaction_receipt(w3.eth.send_raw_transaction(raw))
    assert receipt["status"] == 1
    return receipt


def test_issue_holders_snapshot_and_claim(chain_app: FastAPI, chain_services: Services) -> None:
    services = chain_services
    owner, backer, stranger = new_wallet(), new_wallet(), new_wallet()
    with TestClient(chain_app) as client:
        sign_in(client, owner)
        agent = _minted_agent(services, client, "Ivy")
        agent_id = agent["id"]
        assert client.get(f"/api/agents/{agent_id}/shares").status_code == 404

    with TestClient(chain_app) as other:
        sign_in(other, stranger)
        refused = other.post(f"/api/agents/{agent_id}/shares", json=ISSUE)
        assert refused.status_code == 403, refused.text
    with TestClient(chain_app) as anonymous:
        assert anonymous.post(f"/api/agents/{agent_id}/shares", json=ISSUE).status_code == 401

    with TestClient(chain_app) as client:
        sign_in(client, owner)
        bad = client.post(f"/api/agents/{agent_id}/shares", json={**ISSUE, "revenue_bps": 10_001})
        assert bad.status_code == 422, bad.text
        issued = client.post(f"/api/agents/{agent_id}/shares", json=ISSUE)
        assert issued.status_code == 201, issued.text
        shares = issued.json()
        assert shares["supply_tokens"] == "1000" and shares["revenue_bps"] == 2500
        assert shares["issuer"] == owner.address
        assert services.shares.share_contract_of(agent_id) == (shares["address"], 2500)
        again = client.post(f"/api/agents/{agent_id}/shares", json=ISSUE)
        assert again.status_code == 409, again.text

        holders = client.get(f"/api/agents/{agent_id}/shares/holders").json()
        assert [(h["address"], h["percent"]) for h in holders] == [(owner.address, 100.0)]

        # The owner sells a quarter to a backer, with their own wallet.
        contract = AgentSharesContract(services.chain.chain.web3, shares["address"])
        transfer = contract.encode("transfer", backer.address, 250 * 10**18)
        _send(services, owner, {"to": shares["address"], "data": transfer})
        holders = client.get(f"/api/agents/{agent_id}/shares/holders").json()
        assert [(h["address"], h["balance_tokens"]) for h in holders] == [
            (owner.address, "750"),
            (backer.address, "250"),
        ]

        # Income arrives; nothing to snapshot before it.
        nothing = client.post(f"/api/agents/{agent_id}/shares/snapshot")
        assert nothing.status_code == 409 and "nothing to snapshot" in nothing.text
        payer = new_wallet()
        _send(services, payer, {"to": shares["address"], "value": hex(10**18)})
        snap = client.post(f"/api/agents/{agent_id}/shares/snapshot")
        assert snap.status_code == 200, snap.text
        assert snap.json()["snapshot_id"] == 1
        assert snap.json()["revenue_wei"] == str(10**18)
        claimable = 10**18 * 8_000 // 10_000  # the default claimable part
        revenue = client.get(f"/api/agents/{agent_id}/revenue").json()
        assert revenue["shares"]["current_snapshot"] == 1
        assert [p["revenue_wei"] for p in revenue["income"]] == [str(10**18)]
        assert revenue["account_balance_wei"] == "0"

    with TestClient(chain_app) as client:
        sign_in(client, backer)
        rows = client.get(
            f"/api/agents/{agent_id}/shares/claimable", params={"account": backer.address}
        ).json()
        assert rows == [{"snapshot_id": 1, "amount_wei": str(claimable // 4), "claimed": False}]
        held = client.get("/api/shares/holdings").json()
        assert [(h["symbol"], h["balance_tokens"], h["claimable_wei"]) for h in held] == [
            ("IVY", "250", str(claimable // 4))
        ]
        tx = client.post(f"/api/agents/{agent_id}/shares/claim", json={"snapshot_id": 1})
        assert tx.status_code == 200, tx.text
        before = services.chain.chain.web3.eth.get_balance(shares["address"])
        _send(services, backer, tx.json())
        after = services.chain.chain.web3.eth.get_balance(shares["address"])
        assert before - after == claimable // 4
        twice = client.post(f"/api/agents/{agent_id}/shares/claim", json={"snapshot_id": 1})
        assert twice.status_code == 409
        assert "already claimed" in twice.json()["error"]["message"]
        assert client.get("/api/shares/holdings").json()[0]["claimable_wei"] == "0"

    with TestClient(chain_app) as client:
        sign_in(client, stranger)
        none = client.post(f"/api/agents/{agent_id}/shares/claim", json={"snapshot_id": 1})
        assert none.status_code == 409
        assert "Nothing to claim from snapshot 1" in none.json()["error"]["message"]


def _nft(services: Services) -> Any:
    return services.chain.ensure_started()


def test_metadata_links_a_fetchable_image_and_shows_price_and_share(
    chain_app: FastAPI, chain_services: Services
) -> None:
    owner = new_wallet()
    with TestClient(chain_app) as client:
        sign_in(client, owner)
        agent = _minted_agent(chain_services, client, "Wren")  # no avatar
        token_id = agent["token_id"]
        # What a plain web3 client does: tokenURI from the contract, then the JSON, then
        # the image it links (paths only: the test client stands in for the public host).
        nft = _nft(chain_services)
        uri = nft.contract.functions.tokenURI(int(token_id)).call()
        meta = client.get(urlsplit(uri).path).json()
        attributes = {a["trait_type"]: a["value"] for a in meta["attributes"]}
        assert attributes["Price"] == "free"
        assert "Revenue share (bps)" not in attributes
        image = client.get(urlsplit(meta["image"]).path)
        assert image.status_code == 200 and image.headers["content-type"] == "image/png"
        assert Image.open(io.BytesIO(image.content)).size == (400, 600)

        issued = client.post(f"/api/agents/{agent['id']}/shares", json={**ISSUE, "symbol": "WREN"})
        assert issued.status_code == 201, issued.text
        meta = client.get(f"/api/nft/{token_id}").json()
        attributes = {a["trait_type"]: a["value"] for a in meta["attributes"]}
        assert attributes["Revenue share (bps)"] == 2500
