"""The Revenue panel and the Wallet screen in a real headless Chromium, against the app on a
real anvil node, with an injected EIP-1193 wallet (as in test_chain_browser.py) that can also
send transactions: the owner issues shares, income arrives, the browser wallet takes a
snapshot and claims, and a second claim is refused with a sentence."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account
from playwright.sync_api import Page, expect
from web3 import Web3

from agents.llm.pool import LLMPool
from chain.anvil_chain import AnvilChain
from chain.contract import token_id_of
from container import Services, build_services
from tests.chain.helpers import fast_settings
from tests.servers import serve_app
from tests.ui.test_chain_browser import PROVIDER, FakeBrowserWallet
from tests.waiting import wait_until

SHOTS = Path("/tmp/shots")


class SendingWallet(FakeBrowserWallet):
    """The fake wallet, plus what a wallet does to send a transaction the page asks for."""

    def __init__(self, account: Any, chain_id: int, w3: Web3) -> None:
        super().__init__(account, chain_id)
        self.w3 = w3

    def handle(self, method: str, params_json: str) -> str:
        if method not in ("eth_sendTransaction", "eth_getTransactionReceipt"):
            return super().handle(method, params_json)
        self.requests.append(method)
        params: list[Any] = json.loads(params_json)
        try:
            if method == "eth_getTransactionReceipt":
                try:
                    receipt = self.w3.eth.get_transaction_receipt(params[0])
                except Exception:
                    return json.dumps({"result": None})
                return json.dumps({"result": {"status": hex(receipt["status"])}})
            return json.dumps({"result": self._send(params[0])})
        except Exception as exc:
            return json.dumps({"error": str(exc)})

    def _send(self, request: dict[str, Any]) -> str:
        w3, sender = self.w3, self.account.address
        assert request["from"].lower() == sender.lower()
        tx: dict[str, Any] = {
            "from": sender,
            "to": Web3.to_checksum_address(request["to"]),
            "data": request.get("data", "0x"),
            "value": int(request.get("value", "0x0"), 16),
            "nonce": w3.eth.get_transaction_count(sender),
            "chainId": self.chain_id,
        }
        tx["gas"] = int(w3.eth.estimate_gas(tx) * 1.3)
        base = w3.eth.get_block("latest")["baseFeePerGas"]
        tx.update(maxFeePerGas=2 * base + 10**9, maxPriorityFeePerGas=10**9)
        signed = self.account.sign_transaction(tx)
        return "0x" + w3.eth.send_raw_transaction(signed.raw_transaction).hex().removeprefix("0x")


@pytest.fixture
def revenue_server(
    tmp_path: Path, llm_pool: LLMPool, anvil_node: AnvilChain
) -> Iterator[tuple[str, Services]]:
    from app import create_app

    services = build_services(
        fast_settings(tmp_path / "data", chain="anvil"), llm=llm_pool, chain=anvil_node
    )
    services.chain.start(follow=False)
    try:
        with serve_app(create_app(services=services)) as url:
            yield url, services
    finally:
        services.close()


def _field(page: Page, elem_id: str) -> Any:
    return page.locator(f"#{elem_id}").locator("textarea, input").first


def _shoot(page: Page, name: str, selector: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    for width in (1280, 390):
        page.set_viewport_size({"width": width, "height": 1400})
        page.locator(selector).scroll_into_view_if_needed()
        page.screenshot(path=str(SHOTS / f"shares-{name}-{width}.png"), full_page=True)
    page.set_viewport_size({"width": 1280, "height": 1400})


@pytest.mark.browser
def test_owner_issues_shares_and_the_browser_wallet_snapshots_and_claims(
    revenue_server: tuple[str, Services], page: Page, anvil_node: AnvilChain
) -> None:
    url, services = revenue_server
    account = Account.create()
    anvil_node.fund(account.address, 10**19)
    w3 = anvil_node.web3
    wallet = SendingWallet(account, services.chain.chain_id, w3)
    page.set_viewport_size({"width": 1280, "height": 1400})
    page.context.expose_function("__testWallet", wallet.handle)
    page.context.add_init_script(PROVIDER)
    page.goto(f"{url}/ui/")
    expect(page.locator("#wallet-status")).to_contain_text("Not signed in")
    page.locator("#wallet-browser").click()
    expect(page.locator("#wallet-status")).to_contain_text(account.address, timeout=20_000)

    page.get_by_role("tab", name="Agents").click()  # the studio opens on the Gallery
    _field(page, "agent-name").fill("Orla")
    _field(page, "agent-description").fill("{{char}} keeps the lighthouse.")
    page.locator("#agent-save").click()
    expect(page.locator("#agent-status")).to_contain_text("Created Orla")
    page.locator("#agent-tab-chain-button").click()  # identity and revenue: the On-chain tab
    expect(page.locator("#chain-owner")).to_contain_text(account.address)
    agent = services.agents.list_agents()[0]

    # The owner sees the issue form once the agent is minted.
    page.locator("#agent-revenue").get_by_text("Revenue", exact=True).first.click()
    page.locator("#revenue-refresh").click()
    expect(page.locator("#revenue-shares")).to_have_text("none issued")
    expect(page.locator("#revenue-issue")).to_be_visible()
    _field(page, "revenue-name").fill("Orla shares")
    _field(page, "revenue-symbol").fill("orla")
    _shoot(page, "issue", "#revenue-issue")
    page.locator("#revenue-issue-button").click()
    expect(page.locator("#revenue-message")).to_contain_text("Issued 1000 ORLA")
    expect(page.locator("#revenue-shares")).to_contain_text("1000 ORLA")
    short = f"{account.address[:8]}…{account.address[-6:]}"
    expect(page.locator("#revenue-holders")).to_contain_text(short)
    expect(page.locator("#revenue-issue")).to_be_hidden()
    shares = services.shares.get(agent.id)

    # The holder routes the shares' part of the agent's income to them, once, from the wallet.
    page.locator("#revenue-route").click()
    expect(page.locator("#revenue-message")).to_contain_text("Income routed", timeout=30_000)
    routed, bps = services.economy.payments().revenue_share(token_id_of(agent.id))
    assert (routed.lower(), bps) == (shares.address.lower(), 2_000)  # the 20 % issued
    page.locator("#revenue-route").click()
    expect(page.locator("#revenue-message")).to_contain_text("already goes to")

    # Income arrives (what the payment contract sends), then the wallet snapshots it.
    payer = Account.create()
    anvil_node.fund(payer.address, 2 * 10**18)
    tx = {
        "to": shares.address,
        "value": 10**18,
        "gas": 100_000,
        "nonce": 0,
        "chainId": services.chain.chain_id,
        "maxFeePerGas": 2 * w3.eth.get_block("latest")["baseFeePerGas"] + 10**9,
        "maxPriorityFeePerGas": 10**9,
    }
    w3.eth.wait_for_transaction_receipt(
        w3.eth.send_raw_transaction(payer.sign_transaction(tx).raw_transaction)
    )
    page.locator("#revenue-refresh").click()
    expect(page.locator("#revenue-pending")).to_have_text("1 ETH")
    page.locator("#revenue-snapshot").click()
    expect(page.locator("#revenue-message")).to_contain_text("Snapshot taken")
    expect(page.locator("#revenue-snapshots")).to_have_text("1")
    expect(page.locator("#revenue-mine")).to_contain_text("You can claim 0.8 ETH")
    assert "eth_sendTransaction" in wallet.requests

    before = w3.eth.get_balance(account.address)
    page.locator("#revenue-claim").click()
    expect(page.locator("#revenue-message")).to_contain_text("Claimed 1 snapshot: 0.8 ETH")
    wait_until(
        lambda: w3.eth.get_balance(account.address) > before,
        interval=0.2,
        message="the claim to pay the wallet",
    )
    assert w3.eth.get_balance(shares.address) == 2 * 10**17  # the redeemable part stays
    expect(page.locator("#revenue-mine")).to_contain_text("nothing to claim")
    page.locator("#revenue-claim").click()
    expect(page.locator("#revenue-message")).to_contain_text("Nothing to claim")
    _shoot(page, "revenue", "#agent-revenue")

    # The Wallet screen lists the holding; payments are not part of this node.
    page.get_by_role("tab", name="Wallet").click()
    page.locator("#wallet-refresh").click()
    expect(page.locator("#wallet-holdings")).to_contain_text("ORLA")
    expect(page.locator("#wallet-screen-status")).to_contain_text("nothing to claim right now")
    # The payments side: the prepaid balance in the Payments contract (nothing deposited yet).
    expect(page.locator("#wallet-payments")).to_contain_text("Prepaid balance")
    expect(page.locator("#wallet-payments")).to_contain_text("0 ETH")
    _shoot(page, "wallet", "#wallet-holdings")
