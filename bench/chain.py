"""Gas per operation of AgentNFT and Payments, the API's mint latency and the latency the
balance check adds to a priced request, on a real anvil node.

    python bench/chain.py              # 10 API mints (a minute or so)
    python bench/chain.py --mints 50

Gas is deterministic (the same on every machine); latency depends on the machine and its
load, which the table prints beside it. The gas targets (``TARGETS``) keep a mint cheap enough
to mint every agent: a first mint to a new owner at most 100k gas, a mint to an existing holder
at most 80k. A design that adds a storage slot per token (+22k gas) misses both.

Settlement is measured per settled request, for batches of 1, 10 and 100 requests as the
settler builds them (requests of one payer to one agent are one line); the target is under
5,000 gas per request at 100. The worst case (100 requests from 100 different payers, one
line each) is printed beside it. The balance check is ``EconomyService.hold`` + ``release`` on
a priced agent with the wallet's balance cached (what the request path pays); target under
2 ms p50.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from eth_account import Account
from eth_account.messages import encode_defunct
from eth_account.signers.local import LocalAccount
from web3.contract.contract import ContractFunction

from chain.anvil_chain import AnvilChain
from chain.contract import AgentNFT, sign_card_update, token_id_of
from chain.deploy import deploy_agent_nft

TARGETS = {
    "mint, new owner": 100_000,
    "mint, existing holder": 80_000,
    "settle 100 requests (10 payers, 2 agents), per request": 5_000,
}


def send(node: AnvilChain, account: LocalAccount, call: ContractFunction) -> int:
    w3 = node.web3
    node.fund(account.address, 10**20)
    tx = call.build_transaction(
        {
            "from": account.address,
            "nonce": w3.eth.get_transaction_count(account.address),
            "chainId": w3.eth.chain_id,
        }
    )
    raw = account.sign_transaction(tx).raw_transaction
    receipt = w3.eth.wait_for_transaction_receipt(w3.eth.send_raw_transaction(raw))
    assert receipt["status"] == 1
    return int(receipt["gasUsed"])


def gas_table(node: AnvilChain) -> list[tuple[str, int]]:
    minter, alice, bob, relayer = (Account.create() for _ in range(4))
    node.fund(minter.address, 10**20)
    deployment, deploy_gas = deploy_agent_nft(
        node.web3, minter, base_uri="http://127.0.0.1:7860/api/nft/", royalty_bps=500
    )
    nft = AgentNFT(node.web3, deployment)
    rows = [(f"deploy {name}", gas) for name, gas in deploy_gas.items()]
    first, second = uuid.uuid4().hex, uuid.uuid4().hex
    rows.append(
        (
            "mint, new owner",
            send(node, minter, nft.mint_call(alice.address, first, "0x" + "11" * 32)),
        )
    )
    rows.append(
        (
            "mint, existing holder",
            send(node, minter, nft.mint_call(alice.address, second, "0x" + "11" * 32)),
        )
    )
    token = token_id_of(first)
    rows.append(
        ("update direct, first", send(node, alice, nft.update_call(token, "0x" + "22" * 32)))
    )
    rows.append(
        ("update direct, later", send(node, alice, nft.update_call(token, "0x" + "33" * 32)))
    )
    other = token_id_of(second)
    for label, version, value in (("first", 0, "44"), ("later", 1, "55")):
        deadline = int(time.time()) + 3600
        signature = sign_card_update(
            alice, nft.typed_update(other, "0x" + value * 32, version, deadline)
        )
        call = nft.update_with_sig_call(
            other, "0x" + value * 32, version, deadline, alice.address, signature
        )
        rows.append((f"update relayed (EIP-712), {label}", send(node, relayer, call)))
    transfer = nft.contract.functions.transferFrom
    rows.append(
        (
            "transfer, to a new holder",
            send(node, alice, transfer(alice.address, bob.address, token)),
        )
    )
    rows.append(
        (
            "transfer, to an existing holder",
            send(node, alice, transfer(alice.address, bob.address, other)),
        )
    )
    return rows  # fmt: skip


def shares_gas_table(node: AnvilChain) -> list[tuple[str, int]]:
    """Revenue shares (AgentShares, ERC-7641): issue, a transfer, a snapshot, a claim, a burn."""
    from chain.deploy import deploy_contract
    from economy.shares_contract import AgentSharesContract

    issuer, backer, payer = (Account.create() for _ in range(3))
    node.fund(issuer.address, 10**20)
    address, _, issue_gas = deploy_contract(
        node.web3, issuer, "AgentShares",
        "Bench shares", "BENCH", 1_000 * 10**18, issuer.address, issuer.address, 1, 2_000, 8_000,
    )  # fmt: skip
    shares = AgentSharesContract(node.web3, address)
    rows = [("shares: issue (deploy AgentShares)", issue_gas)]
    rows.append(
        (
            "shares: transfer to a new holder",
            send(node, issuer, shares.transfer_call(backer.address, 250 * 10**18)),
        )
    )
    w3 = node.web3
    node.fund(payer.address, 10**19)
    income = {
        "to": address, "value": 10**18, "gas": 60_000, "nonce": 0, "chainId": w3.eth.chain_id,
        "maxFeePerGas": 2 * w3.eth.get_block("latest")["baseFeePerGas"] + 10**9,
        "maxPriorityFeePerGas": 10**9,
    }  # fmt: skip
    w3.eth.wait_for_transaction_receipt(
        w3.eth.send_raw_transaction(payer.sign_transaction(income).raw_transaction)
    )
    rows.append(("shares: snapshot", send(node, payer, shares.snapshot_call())))
    rows.append(("shares: claim", send(node, backer, shares.claim_call(1))))
    rows.append(("shares: burn and redeem", send(node, backer, shares.burn_call(10**18))))
    return rows  # fmt: skip


def settle_gas(node: AnvilChain) -> list[tuple[str, int]]:
    """Gas per settled request: the settle transaction's gas divided by its requests."""
    from economy.contract import Payments, SettleLine, deploy_payments
    from economy.records import NATIVE

    minter, owner = Account.create(), Account.create()
    node.fund(minter.address, 10**21)
    deployment, _ = deploy_agent_nft(
        node.web3, minter, base_uri="http://127.0.0.1:7860/api/nft/", royalty_bps=500
    )
    nft = AgentNFT(node.web3, deployment)
    pay, deploy_gas = deploy_payments(
        node.web3, minter, agents=nft.address, settler=minter.address, fee_bps=100
    )
    payments = Payments(node.web3, pay)
    agents = []
    for _ in range(2):
        agent = uuid.uuid4().hex
        send(node, minter, nft.mint_call(owner.address, agent, "0x" + "11" * 32))
        agents.append(token_id_of(agent))
    payers = [Account.create() for _ in range(100)]
    for payer in payers:
        node.fund(payer.address, 10**20)
        deposit = payments.contract.functions.deposit()
        tx = deposit.build_transaction(
            {
                "from": payer.address,
                "value": 10**18,
                "nonce": node.web3.eth.get_transaction_count(payer.address),
                "chainId": node.web3.eth.chain_id,
            }
        )
        node.web3.eth.send_raw_transaction(payer.sign_transaction(tx).raw_transaction)
    rows = [(f"deploy {name}", gas) for name, gas in deploy_gas.items()]

    def settle(label: str, requests: list[tuple[int, int]]) -> None:
        amounts: dict[tuple[int, int], int] = {}
        for payer, agent in requests:  # what the settler does: one line per (agent, payer)
            amounts[(agent, payer)] = amounts.get((agent, payer), 0) + 1_234_567
        lines = sorted(
            SettleLine(NATIVE, agents[a], payers[p].address, amount)
            for (a, p), amount in amounts.items()
        )
        call = payments.settle_call("0x" + os.urandom(32).hex(), lines)
        gas = send(node, minter, call)
        rows.append((f"{label}, per request", gas // len(requests)))

    settle("settle 1 request", [(0, 0)])
    settle("settle 10 requests (10 payers, 1 agent)", [(p, 0) for p in range(10)])
    settle("settle 100 requests (10 payers, 2 agents)", [(i % 10, i % 2) for i in range(100)])
    settle("settle 100 requests (100 payers, worst)", [(p, p % 2) for p in range(100)])
    return rows


def balance_check_latency(node: AnvilChain, data_dir: Path, calls: int = 2000) -> list[float]:
    """Seconds ``EconomyService.hold`` + ``release`` take for a priced agent (cache warm)."""
    from fastapi.testclient import TestClient

    from app import create_app
    from container import build_services
    from core.principal import Principal
    from core.settings import Settings
    from economy.prices import Price

    settings = Settings(data_dir=data_dir, llm_preload=False, chain="anvil")
    services = build_services(settings, chain=node)
    services.chain.start(follow=False)
    services.economy._context_window = lambda _agent: 4096  # no model is loaded here
    client = TestClient(create_app(services=services), base_url="http://localhost")
    owner, payer = Account.create(), Account.create()
    nonce = client.post("/api/auth/nonce", json={"address": owner.address}).json()
    signature = owner.sign_message(encode_defunct(text=nonce["message"])).signature.hex()
    client.post(
        "/api/auth/verify",
        json={"message": nonce["message"], "signature": "0x" + signature.removeprefix("0x")},
    )
    latencies = []
    try:
        agent = client.post("/api/agents", json={"name": "Priced"}).json()["id"]
        while services.agents.get_agent(agent).mint_state != "minted":
            time.sleep(0.05)
        price = Price(prompt_per_1k=1000, completion_per_1k=3000)
        services.economy.set_price(agent, price, principal=Principal(address=owner.address))
        payments = services.economy.payments()
        node.fund(payer.address, 10**20)
        deposit = payments.contract.functions.deposit().build_transaction(
            {
                "from": payer.address,
                "value": 10**18,
                "nonce": 0,
                "chainId": node.web3.eth.chain_id,
            }
        )
        node.web3.eth.wait_for_transaction_receipt(
            node.web3.eth.send_raw_transaction(payer.sign_transaction(deposit).raw_transaction)
        )
        caller = Principal(address=payer.address, via="key", key_id="bench")
        economy = services.economy
        for _ in range(calls):
            start = time.perf_counter()
            held = economy.hold(agent, principal=caller, max_new_tokens=160)
            economy.release(held)
            latencies.append(time.perf_counter() - start)
            assert held
    finally:
        services.close()
    return latencies  # fmt: skip


def api_mint_latency(node: AnvilChain, mints: int, data_dir: Path) -> list[float]:
    """Seconds from ``POST /api/agents/{id}/mint`` to the job reporting the token minted."""
    from fastapi.testclient import TestClient

    from app import create_app
    from container import build_services
    from core.settings import Settings

    settings = Settings(
        data_dir=data_dir, llm_preload=False, chain="anvil", chain_mint_on_create=False
    )
    services = build_services(settings, chain=node)
    services.chain.start(follow=False)
    client = TestClient(create_app(services=services), base_url="http://localhost")  # allowed host
    wallet = Account.create()
    nonce = client.post("/api/auth/nonce", json={"address": wallet.address}).json()
    signature = wallet.sign_message(encode_defunct(text=nonce["message"])).signature.hex()
    client.post(
        "/api/auth/verify",
        json={"message": nonce["message"], "signature": "0x" + signature.removeprefix("0x")},
    )
    latencies = []
    try:
        for i in range(mints + 1):
            agent = client.post("/api/agents", json={"name": f"Bench {i}"}).json()
            start = time.perf_counter()
            job = client.post(f"/api/agents/{agent['id']}/mint").json()
            while True:
                state = client.get(f"/api/jobs/{job['id']}").json()
                if state["status"] in ("succeeded", "failed", "cancelled"):
                    break
                time.sleep(0.005)
            assert state["status"] == "succeeded", state
            if i:  # the first one pays for starting the job executor
                latencies.append(time.perf_counter() - start)
    finally:
        services.close()
    return latencies  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--mints", type=int, default=10, help="API mints to time (default 10)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        node = AnvilChain(state_file=Path(tmp) / "anvil-state.json")
        node.start()
        try:
            rows = gas_table(node) + settle_gas(node)
            rows += shares_gas_table(node)
            latencies = api_mint_latency(node, args.mints, Path(tmp) / "data")
            checks = balance_check_latency(node, Path(tmp) / "economy")
        finally:
            node.stop()
    print(
        f"\nAgentNFT and Payments on anvil "
        f"(load average {os.getloadavg()[0]:.2f}, {os.cpu_count()} CPUs)\n"
    )
    print(f"| {'operation':<56} | {'gas':>9} | {'target':>8} | {'':<4} |")
    print(f"|{'-' * 58}|{'-' * 11}|{'-' * 10}|{'-' * 6}|")
    for label, gas in rows:
        target = TARGETS.get(label)
        verdict = "" if target is None else ("ok" if gas <= target else "MISS")
        shown = f"{target:,}" if target else "-"
        print(f"| {label:<56} | {gas:>9,} | {shown:>8} | {verdict:<4} |")
    ms = sorted(x * 1000 for x in latencies)
    p95 = ms[min(len(ms) - 1, round(0.95 * (len(ms) - 1)))]
    print(
        f"\nAPI mint latency (POST /api/agents/{{id}}/mint to job succeeded, {len(ms)} mints): "
        f"p50 {statistics.median(ms):.0f} ms, p95 {p95:.0f} ms, min {ms[0]:.0f} ms"
    )
    us = sorted(x * 1e6 for x in checks)
    p50 = statistics.median(us)
    verdict = "ok" if p50 < 2000 else "MISS"
    print(
        f"Balance check of a priced request (hold + release, {len(us)} calls): "
        f"p50 {p50:.0f} us, p95 {us[round(0.95 * (len(us) - 1))]:.0f} us "
        f"(target p50 < 2 ms: {verdict})"
    )


if __name__ == "__main__":
    main()
