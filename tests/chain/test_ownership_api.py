"""Ownership gates editing, through the API, with the token read from a real (in-process) chain.

Covers the policy the README states: drafts nobody owns are open (local single-user use);
an agent created by a signed-in wallet is minted to it and only its holder may change it;
a transfer made outside the app moves control at once; each accepted edit of a minted agent
is anchored on chain (relayed with the holder's EIP-712 signature).
"""

from __future__ import annotations

import io
from typing import Any

from eth_account.signers.local import LocalAccount
from fastapi import FastAPI
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from PIL import Image

from api.deps import OWNER_CHECK_EXEMPT, agent_owner
from chain.contract import sign_card_update
from container import Services
from core.principal import SYSTEM
from tests.chain.helpers import mint_job_of, new_wallet, sign_in, wait_job

STATE_CHANGING = {"POST", "PUT", "PATCH", "DELETE"}


def _png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (8, 8), "red").save(out, "PNG")
    return out.getvalue()


def _dependencies(route: APIRoute) -> set[Any]:
    found, stack = set(), list(route.dependant.dependencies)
    while stack:
        dep = stack.pop()
        found.add(dep.call)
        stack.extend(dep.dependencies)
    return found


def _api_routes(routes: list[Any]) -> list[APIRoute]:
    """Every APIRoute, also inside included routers (FastAPI keeps those nested)."""
    found: list[APIRoute] = []
    for route in routes:
        if isinstance(route, APIRoute):
            found.append(route)
        elif hasattr(route, "original_router"):
            found += _api_routes(route.original_router.routes)
    return found


def test_every_state_changing_agent_route_runs_the_owner_check(chain_app: FastAPI) -> None:
    """A new route that changes an agent and forgets ``AgentOwner`` fails here."""
    unguarded, checked = [], 0
    for route in _api_routes(chain_app.routes):
        if "{agent_id}" not in route.path:
            continue
        checked += 1
        for method in route.methods & STATE_CHANGING:
            key = f"{method} {route.path}"
            if key not in OWNER_CHECK_EXEMPT and agent_owner not in _dependencies(route):
                unguarded.append(key)
    assert checked >= 8, "the route walk no longer finds the agent routes"
    assert unguarded == [], f"routes that change an agent without the owner check: {unguarded}"


def _owned_agent(services: Services, client: TestClient, name: str = "Ivy") -> dict[str, Any]:
    created = client.post("/api/agents", json={"name": name, "description": "first"})
    assert created.status_code == 201, created.text
    agent = created.json()
    assert agent["mint_state"] == "pending"
    job = mint_job_of(services, agent["id"])
    assert job.status == "succeeded", job.error
    return client.get(f"/api/agents/{agent['id']}").json()


def test_anonymous_drafts_stay_open_for_local_use(chain_app: FastAPI) -> None:
    client = TestClient(chain_app)
    agent = client.post("/api/agents", json={"name": "Draft"}).json()
    assert agent["owner_address"] is None and agent["mint_state"] is None
    assert client.patch(f"/api/agents/{agent['id']}", json={"scenario": "x"}).status_code == 200
    other = TestClient(chain_app)
    sign_in(other, new_wallet())
    assert other.patch(f"/api/agents/{agent['id']}", json={"scenario": "y"}).status_code == 200
    assert client.delete(f"/api/agents/{agent['id']}").status_code == 204


def test_created_by_a_wallet_minted_to_it_and_only_it_edits(
    chain_app: FastAPI, chain_services: Services
) -> None:
    client, anon, other = TestClient(chain_app), TestClient(chain_app), TestClient(chain_app)
    # A local wallet: its key is unlocked for the session, so edits are anchored unprompted.
    local = client.post("/api/auth/local-wallets", json={"password": "local wallet pw"})
    owner = local.json()["address"]
    sign_in(other, new_wallet())
    agent = _owned_agent(chain_services, client)
    agent_id = agent["id"]
    assert agent["mint_state"] == "minted" and agent["owner_address"] == owner
    status = client.get(f"/api/agents/{agent_id}/chain").json()
    assert status["owner"] == owner and status["owner_source"] == "chain"
    assert status["matches"] is True and status["card_version"] == 0

    for who, expected in ((anon, 401), (other, 403)):
        assert who.patch(f"/api/agents/{agent_id}", json={"name": "x"}).status_code == expected
        assert who.put(f"/api/agents/{agent_id}", json={"name": "x"}).status_code == expected
        files = {"file": ("a.png", _png(), "image/png")}
        assert who.put(f"/api/agents/{agent_id}/avatar", files=files).status_code == expected
        assert who.delete(f"/api/agents/{agent_id}").status_code == expected
    refused = other.patch(f"/api/agents/{agent_id}", json={"name": "x"}).json()["error"]
    assert refused["type"] == "NotOwnerError" and owner in refused["message"]
    assert client.get(f"/api/agents/{agent_id}").json()["name"] == "Ivy"  # nothing changed

    edited = client.patch(f"/api/agents/{agent_id}", json={"description": "second"})
    assert edited.status_code == 200
    anchors = chain_services.jobs.list(kind="chain.anchor", target_id=agent_id, principal=SYSTEM)
    assert len(anchors) == 1 and wait_job(chain_services, anchors[0].id).status == "succeeded"
    verified = client.get(f"/api/agents/{agent_id}/chain/verify").json()
    assert verified["matches"] is True and verified["chain_card_version"] == 1
    assert verified["served_card_hash"] == edited.json()["content_hash"]


def test_api_key_of_the_holder_edits_and_of_another_address_does_not(
    chain_app: FastAPI, chain_services: Services
) -> None:
    owner, stranger = new_wallet(), new_wallet()
    client, other = TestClient(chain_app), TestClient(chain_app)
    sign_in(client, owner)
    sign_in(other, stranger)
    agent_id = _owned_agent(chain_services, client)["id"]
    mine = {"X-API-Key": client.post("/api/auth/keys", json={}).json()["key"]}
    theirs = {"X-API-Key": other.post("/api/auth/keys", json={}).json()["key"]}
    bare = TestClient(chain_app)
    assert (
        bare.patch(f"/api/agents/{agent_id}", json={"tags": ["a"]}, headers=theirs).status_code
        == 403
    )
    assert (
        bare.patch(f"/api/agents/{agent_id}", json={"tags": ["a"]}, headers=mine).status_code == 200
    )


def _transfer_outside_the_app(services: Services, owner: LocalAccount, to: str, token: int) -> None:
    """The holder transfers with their own key, straight to the contract (a wallet would)."""
    nft, w3 = services.chain.ensure_started(), services.chain.chain.web3
    services.chain.chain.fund(owner.address, 10**19)
    tx = nft.contract.functions.transferFrom(owner.address, to, token).build_transaction(
        {
            "from": owner.address,
            "nonce": w3.eth.get_transaction_count(owner.address),
            "chainId": w3.eth.chain_id,
        }
    )
    receipt = w3.eth.wait_for_transaction_receipt(
        w3.eth.send_raw_transaction(owner.sign_transaction(tx).raw_transaction)
    )
    assert receipt["status"] == 1


def test_a_transfer_outside_the_app_moves_control(
    chain_app: FastAPI, chain_services: Services
) -> None:
    alice, bob = new_wallet(), new_wallet()
    as_alice, as_bob = TestClient(chain_app), TestClient(chain_app)
    sign_in(as_alice, alice)
    sign_in(as_bob, bob)
    agent = _owned_agent(chain_services, as_alice)
    assert as_bob.patch(f"/api/agents/{agent['id']}", json={"name": "Bob's"}).status_code == 403

    _transfer_outside_the_app(chain_services, alice, bob.address, int(agent["token_id"]))
    # No sync has run: the owner check reads the chain itself.
    assert as_alice.patch(f"/api/agents/{agent['id']}", json={"name": "A"}).status_code == 403
    assert as_bob.patch(f"/api/agents/{agent['id']}", json={"name": "Bob's"}).status_code == 200
    chain_services.chain.sync()  # the follower applies the Transfer event to the stored copy
    assert as_bob.get(f"/api/agents/{agent['id']}").json()["owner_address"] == bob.address
    # Bob has no local signer in this app: his edit waits for his signature, then is relayed.
    anchors = chain_services.jobs.list(kind="chain.anchor", target_id=agent["id"], principal=SYSTEM)
    anchor = wait_job(chain_services, anchors[0].id)
    assert anchor.result and anchor.result["status"] == "awaiting_signature"
    assert as_bob.get(f"/api/agents/{agent['id']}/chain").json()["anchor_pending"] is True
    request = as_bob.get(f"/api/agents/{agent['id']}/chain/anchor").json()
    signature = sign_card_update(bob, request["typed_data"])
    body = {k: request[k] for k in ("card_hash", "version", "deadline")} | {"signature": signature}
    # Alice cannot relay Bob's signature (not hers to submit) nor sign for Bob.
    assert as_alice.post(f"/api/agents/{agent['id']}/chain/anchor", json=body).status_code == 403
    forged = body | {"signature": sign_card_update(alice, request["typed_data"])}
    bad = as_bob.post(f"/api/agents/{agent['id']}/chain/anchor", json=forged)
    assert bad.status_code == 401 and "signed by" in bad.json()["error"]["message"]
    relayed = as_bob.post(f"/api/agents/{agent['id']}/chain/anchor", json=body)
    assert relayed.status_code == 202, relayed.text
    assert wait_job(chain_services, relayed.json()["id"]).status == "succeeded"
    assert as_bob.get(f"/api/agents/{agent['id']}/chain/verify").json()["matches"] is True
    # The same signature again is a replay: the version moved on, so it is never resent.
    replay = as_bob.post(f"/api/agents/{agent['id']}/chain/anchor", json=body)
    assert replay.status_code == 202 and replay.json()["id"] == relayed.json()["id"]


def test_mint_button_claims_a_draft_and_metadata_describes_the_token(
    chain_app: FastAPI, chain_services: Services
) -> None:
    anon, client, wallet = TestClient(chain_app), TestClient(chain_app), new_wallet()
    draft = anon.post(
        "/api/agents", json={"name": "Nova", "creator_notes": "A star pilot.", "tags": ["space"]}
    ).json()
    refused = anon.post(f"/api/agents/{draft['id']}/mint")
    assert refused.status_code == 401 and "sign in" in refused.json()["error"]["message"]
    sign_in(client, wallet)
    started = client.post(f"/api/agents/{draft['id']}/mint")
    assert started.status_code == 202 and started.json()["kind"] == "chain.mint"
    assert wait_job(chain_services, started.json()["id"]).status == "succeeded"
    agent = client.get(f"/api/agents/{draft['id']}").json()
    assert agent["owner_address"] == wallet.address
    again = client.post(f"/api/agents/{draft['id']}/mint")
    assert again.status_code == 409
    assert anon.patch(f"/api/agents/{draft['id']}", json={"name": "x"}).status_code == 401

    meta = anon.get(f"/api/nft/{agent['token_id']}").json()
    assert meta["name"] == "Nova" and meta["description"] == "A star pilot."
    assert meta["card_hash"] == agent["content_hash"]
    # No avatar: the metadata links the default one the app draws.
    assert meta["image"].endswith(f"/api/nft/{agent['token_id']}/image")
    assert {"trait_type": "Tag", "value": "space"} in meta["attributes"]
    assert anon.get("/api/nft/12345").status_code == 404
    assert anon.get("/api/nft/not-a-number").status_code == 422
    status = anon.get(f"/api/agents/{draft['id']}/chain").json()
    assert status["royalty_receiver"] == status["token_bound_account"] is not None
    assert status["royalty_bps"] == chain_services.settings.chain.royalty_bps


def test_without_anonymous_edits_every_change_needs_a_wallet(
    chain_app: FastAPI, chain_services: Services
) -> None:
    anon = TestClient(chain_app)
    draft = anon.post("/api/agents", json={"name": "Open"}).json()
    chain_services.settings.auth.anonymous_edits = False
    try:
        assert anon.post("/api/agents", json={"name": "No"}).status_code == 401
        assert anon.patch(f"/api/agents/{draft['id']}", json={"name": "x"}).status_code == 401
        signed = TestClient(chain_app)
        sign_in(signed, new_wallet())
        assert signed.patch(f"/api/agents/{draft['id']}", json={"name": "y"}).status_code == 200
    finally:
        chain_services.settings.auth.anonymous_edits = True


def test_knowledge_bases_belong_to_the_wallet_that_made_them(
    chain_app: FastAPI, chain_services: Services
) -> None:
    alice, bob = new_wallet(), new_wallet()
    as_alice, as_bob, anon = TestClient(chain_app), TestClient(chain_app), TestClient(chain_app)
    sign_in(as_alice, alice)
    sign_in(as_bob, bob)
    kb = as_alice.post("/api/knowledge-bases", json={"name": "Alice's notes"}).json()
    assert kb["owner_address"] == alice.address
    files = {"file": ("notes.txt", b"The harbour opens at dawn.", "text/plain")}
    for who, expected in ((anon, 401), (as_bob, 403)):
        upload = who.post(f"/api/knowledge-bases/{kb['id']}/documents", files=files)
        assert upload.status_code == expected, upload.text
        assert who.delete(f"/api/knowledge-bases/{kb['id']}/documents/x1").status_code == expected
        assert who.delete(f"/api/knowledge-bases/{kb['id']}").status_code == expected
    assert as_alice.get(f"/api/knowledge-bases/{kb['id']}/documents").json() == []

    # Bases are readable, so Bob may let his own agent use Alice's; he may not touch hers.
    bobs_agent = _owned_agent(chain_services, as_bob, "Bob's")["id"]
    alices_agent = _owned_agent(chain_services, as_alice, "Alice's")["id"]
    assert as_bob.put(f"/api/agents/{bobs_agent}/knowledge-bases/{kb['id']}").status_code == 200
    assert as_bob.put(f"/api/agents/{alices_agent}/knowledge-bases/{kb['id']}").status_code == 403
    assert as_bob.delete(f"/api/agents/{bobs_agent}/knowledge-bases/{kb['id']}").status_code == 200

    # A base made without signing in is an open draft, like an agent draft.
    draft = anon.post("/api/knowledge-bases", json={"name": "Scratch"}).json()
    assert draft["owner_address"] is None
    assert as_bob.delete(f"/api/knowledge-bases/{draft['id']}").status_code == 204
    assert as_alice.delete(f"/api/knowledge-bases/{kb['id']}").status_code == 204
