"""Shared by the chain tests: fast settings, wallets that sign in, waiting for jobs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from eth_account import Account
from eth_account.messages import encode_defunct
from eth_account.signers.local import LocalAccount
from fastapi.testclient import TestClient

from container import Services
from core.jobs import JobView
from core.principal import SYSTEM
from core.settings import Settings
from tests.conftest import TEST_CLIENT_HOST


def fast_settings(data_dir: Path, **overrides: Any) -> Settings:
    """Settings for chain tests: eth-tester unless overridden, cheap keystores, short waits."""
    values: dict[str, Any] = {
        "data_dir": data_dir,
        "llm_preload": False,
        "allowed_hosts": TEST_CLIENT_HOST,
        "chain": "eth-tester",
        "keystore_scrypt_n": 16,
        "chain_node_wait_s": 2.0,
        "chain_tx_retries": 2,
        "jobs_poll_interval_s": 0.05,
    }
    values.update(overrides)
    return Settings(**values)


def new_wallet() -> LocalAccount:
    return Account.create()


def siwe_message(client: TestClient, account: LocalAccount) -> str:
    answer = client.post("/api/auth/nonce", json={"address": account.address})
    assert answer.status_code == 200, answer.text
    return answer.json()["message"]


def sign_text(account: LocalAccount, text: str) -> str:
    return "0x" + account.sign_message(encode_defunct(text=text)).signature.hex().removeprefix("0x")


def sign_in(client: TestClient, account: LocalAccount) -> dict[str, Any]:
    """Sign in with Ethereum through the API, as a browser wallet would; the client keeps
    the session cookie."""
    message = siwe_message(client, account)
    answer = client.post(
        "/api/auth/verify", json={"message": message, "signature": sign_text(account, message)}
    )
    assert answer.status_code == 200, answer.text
    return answer.json()


def wait_job(services: Services, job_id: str, timeout: float = 60.0) -> JobView:
    return services.jobs.wait(job_id, timeout=timeout, principal=SYSTEM)


def mint_job_of(services: Services, agent_id: str) -> JobView:
    job = services.chain.mint_job(agent_id)
    assert job is not None, "no mint job was started"
    return wait_job(services, job.id)
