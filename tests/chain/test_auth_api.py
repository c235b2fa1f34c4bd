"""Sign-In with Ethereum through the API: every refusal, sessions, local wallets, API keys.

A real EIP-4361 message signed by a real key (eth_account), verified by the app; the chain is
eth-tester (sign-in itself never sends a transaction).
"""

from __future__ import annotations

import logging
import re
from datetime import timedelta

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from chain.records import ApiKeyRecord, NonceRecord, SessionRecord, utcnow
from container import Services
from tests.chain.helpers import new_wallet, sign_in, sign_text, siwe_message


def _verify(client: TestClient, message: str, signature: str) -> tuple[int, str]:
    answer = client.post("/api/auth/verify", json={"message": message, "signature": signature})
    return answer.status_code, answer.json().get("error", {}).get("message", "")


def test_sign_in_sets_an_httponly_lax_cookie_and_logout_ends_it(chain_app: FastAPI) -> None:
    client, wallet = TestClient(chain_app), new_wallet()
    assert client.get("/api/auth/me").json()["address"] is None
    message = siwe_message(client, wallet)
    assert "wants you to sign in with your Ethereum account" in message
    assert f"Chain ID: {client.get('/api/chain').json()['chain_id']}" in message
    answer = client.post(
        "/api/auth/verify", json={"message": message, "signature": sign_text(wallet, message)}
    )
    assert answer.status_code == 200, answer.text
    cookie = answer.headers["set-cookie"]
    assert "anima_session=" in cookie and "HttpOnly" in cookie and "SameSite=lax" in cookie
    me = client.get("/api/auth/me").json()
    assert (me["address"], me["via"], me["wallet"]) == (wallet.address, "session", "browser")
    assert client.post("/api/auth/logout").status_code == 204
    assert client.get("/api/auth/me").json()["address"] is None


def test_bad_signature_is_refused(chain_app: FastAPI) -> None:
    client, wallet, other = TestClient(chain_app), new_wallet(), new_wallet()
    message = siwe_message(client, wallet)
    status, why = _verify(client, message, sign_text(other, message))
    assert status == 401 and "does not match" in why
    status, why = _verify(client, message, "0x1234")
    assert status == 401 and "malformed" in why
    # The nonce was not consumed by the failures: the real owner can still use it.
    assert _verify(client, message, sign_text(wallet, message))[0] == 200


def test_replayed_message_is_refused(chain_app: FastAPI) -> None:
    client, wallet = TestClient(chain_app), new_wallet()
    message = siwe_message(client, wallet)
    signature = sign_text(wallet, message)
    assert _verify(client, message, signature)[0] == 200
    status, why = _verify(TestClient(chain_app), message, signature)
    assert status == 401 and "already used" in why


def test_expired_nonce_is_refused(chain_app: FastAPI, chain_services: Services) -> None:
    client, wallet = TestClient(chain_app), new_wallet()
    message = siwe_message(client, wallet)
    nonce = re.search(r"Nonce: (\w+)", message).group(1)  # type: ignore[union-attr]
    with chain_services.db.session() as s:
        s.execute(
            update(NonceRecord)
            .where(NonceRecord.nonce == nonce)
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
    status, why = _verify(client, message, sign_text(wallet, message))
    assert status == 401 and "expired" in why


def test_expired_message_unknown_nonce_wrong_chain_and_site_are_refused(
    chain_app: FastAPI, chain_services: Services
) -> None:
    client, wallet, auth = TestClient(chain_app), new_wallet(), chain_services.auth
    now = utcnow()
    cases = {
        "wrong chain id": auth.build_message(
            wallet.address, auth.issue_nonce("testserver", "http://testserver").nonce,
            "testserver", "http://testserver", now, now + timedelta(minutes=5), chain_id=1,
        ),
        "not 'testserver'": auth.build_message(
            wallet.address, auth.issue_nonce("evil.example", "http://evil.example").nonce,
            "evil.example", "http://evil.example", now, now + timedelta(minutes=5),
        ),
        "message expired": auth.build_message(
            wallet.address, auth.issue_nonce("testserver", "http://testserver").nonce,
            "testserver", "http://testserver", now - timedelta(minutes=10),
            now - timedelta(minutes=5),
        ),
        "unknown nonce": auth.build_message(
            wallet.address, "abcdef0123456789", "testserver", "http://testserver", now,
            now + timedelta(minutes=5),
        ),
    }  # fmt: skip
    for expected, message in cases.items():
        status, why = _verify(client, message, sign_text(wallet, message))
        assert status == 401 and expected in why, (expected, why)
    status, why = _verify(client, "hello, sign me in", sign_text(wallet, "hello"))
    assert status == 401 and "EIP-4361" in why
    assert client.get("/api/auth/me").json()["address"] is None


def test_api_keys_are_hashed_act_for_their_address_and_can_be_revoked(
    chain_app: FastAPI, chain_services: Services
) -> None:
    client, wallet = TestClient(chain_app), new_wallet()
    assert client.post("/api/auth/keys", json={"name": "ci"}).status_code == 401
    sign_in(client, wallet)
    created = client.post("/api/auth/keys", json={"name": "ci"})
    assert created.status_code == 201
    key = created.json()["key"]
    assert key.startswith("anima_") and len(key) > 40
    with chain_services.db.session() as s:
        row = s.scalars(select(ApiKeyRecord).where(ApiKeyRecord.id == created.json()["id"])).one()
        assert key not in (row.key_hash, row.prefix) and len(row.key_hash) == 64
    bare = TestClient(chain_app)
    me = bare.get("/api/auth/me", headers={"X-API-Key": key}).json()
    assert (me["address"], me["via"]) == (wallet.address, "api_key")
    bearer = bare.get("/api/auth/me", headers={"Authorization": f"Bearer {key}"}).json()
    assert bearer["address"] == wallet.address
    # A non-Anima bearer token (what OpenAI clients send) is simply anonymous.
    assert (
        bare.get("/api/auth/me", headers={"Authorization": "Bearer sk-x"}).json()["address"] is None
    )
    assert [k["name"] for k in client.get("/api/auth/keys").json()] == ["ci"]
    assert client.delete(f"/api/auth/keys/{created.json()['id']}").status_code == 204
    refused = bare.get("/api/auth/me", headers={"X-API-Key": key})
    assert refused.status_code == 401 and "revoked" in refused.json()["error"]["message"]
    assert bare.get("/api/auth/me", headers={"X-API-Key": "anima_nope"}).status_code == 401


def test_local_wallet_signs_in_offline_and_a_wrong_password_is_refused(
    chain_app: FastAPI, chain_services: Services
) -> None:
    client = TestClient(chain_app)
    short = client.post("/api/auth/local-wallets", json={"password": "short"})
    assert short.status_code == 422
    created = client.post("/api/auth/local-wallets", json={"password": "correct horse"})
    assert created.status_code == 201, created.text
    address = created.json()["address"]
    assert created.json()["wallet"] == "local"
    assert address in client.get("/api/auth/local-wallets").json()
    keystore = chain_services.settings.wallets_dir / f"{address}.json"
    assert keystore.stat().st_mode & 0o077 == 0  # readable by the owner only
    assert "correct horse" not in keystore.read_text()
    other = TestClient(chain_app)
    wrong = other.post(f"/api/auth/local-wallets/{address}/login", json={"password": "wrong pass"})
    assert wrong.status_code == 401 and other.get("/api/auth/me").json()["address"] is None
    right = other.post(
        f"/api/auth/local-wallets/{address}/login", json={"password": "correct horse"}
    )
    assert right.status_code == 200 and other.get("/api/auth/me").json()["address"] == address


def test_secrets_never_reach_the_logs_or_the_database(
    chain_app: FastAPI, chain_services: Services, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    client = TestClient(chain_app)
    created = client.post("/api/auth/local-wallets", json={"password": "hunter2hunter2"})
    token = client.cookies.get("anima_session")
    key = client.post("/api/auth/keys", json={}).json()["key"]
    assert created.status_code == 201 and token and key
    logged = caplog.text
    for secret in ("hunter2hunter2", token, key):
        assert secret not in logged
    with chain_services.db.session() as s:
        ids = s.scalars(select(SessionRecord.id)).all()
    assert token not in ids  # only its SHA-256 is stored
