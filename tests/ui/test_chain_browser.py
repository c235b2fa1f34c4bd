"""On-chain identity in a real headless Chromium, against the app on a real anvil node.

The page gets an injected EIP-1193 provider (``window.ethereum``), as MetaMask injects one;
its key lives in this test (``eth_account``), and signing requests come back to Python
through Playwright's ``expose_function``. Everything else is real: the studio's own
JavaScript asks the wallet to sign the SIWE message and the EIP-712 card update, the app
verifies them, mints through a durable job and relays the update on anvil.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account
from eth_account.messages import encode_defunct
from eth_account.signers.local import LocalAccount
from playwright.sync_api import Page, expect

from agents.llm.pool import LLMPool
from chain.anvil_chain import AnvilChain
from chain.contract import sign_card_update
from container import Services, build_services
from tests.chain.helpers import fast_settings
from tests.servers import serve_app
from tests.waiting import wait_until

SCREENSHOT = Path("/tmp/studio-chain.png")

# An injected provider that forwards every request to the test's wallet.
PROVIDER = """
window.ethereum = {
  isMetaMask: false,
  request: async ({method, params}) => {
    const answer = JSON.parse(await window.__testWallet(method, JSON.stringify(params || [])));
    if (answer.error) throw new Error(answer.error);
    return answer.result;
  },
};
"""


class FakeBrowserWallet:
    """What a browser wallet does for the page (accounts, chain id, two kinds of signature),
    with a real key: only the wallet UI is missing, never a check."""

    def __init__(self, account: LocalAccount, chain_id: int) -> None:
        self.account = account
        self.chain_id = chain_id
        self.requests: list[str] = []

    def handle(self, method: str, params_json: str) -> str:
        self.requests.append(method)
        params: list[Any] = json.loads(params_json)
        try:
            result: Any
            if method in ("eth_requestAccounts", "eth_accounts"):
                result = [self.account.address]
            elif method == "eth_chainId":
                result = hex(self.chain_id)
            elif method == "personal_sign":
                message = bytes.fromhex(params[0].removeprefix("0x"))
                signed = self.account.sign_message(encode_defunct(primitive=message))
                result = "0x" + signed.signature.hex().removeprefix("0x")
            elif method == "eth_signTypedData_v4":
                result = sign_card_update(self.account, json.loads(params[1]))
            else:
                return json.dumps({"error": f"unsupported method {method}"})
            return json.dumps({"result": result})
        except Exception as exc:  # shown by the page, as a wallet's refusal would be
            return json.dumps({"error": str(exc)})


@pytest.fixture
def chain_server(
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


@pytest.mark.browser
def test_browser_wallet_signs_in_mints_anchors_and_gates_edits(
    chain_server: tuple[str, Services], page: Page
) -> None:
    url, services = chain_server
    wallet = FakeBrowserWallet(Account.create(), services.chain.chain_id)
    page.set_viewport_size({"width": 1280, "height": 1400})
    page.context.expose_function("__testWallet", wallet.handle)
    page.context.add_init_script(PROVIDER)
    page.goto(f"{url}/ui/")
    expect(page.locator("#wallet-status")).to_contain_text("Not signed in")

    # Sign in with the browser wallet: SIWE message signed with personal_sign.
    page.locator("#wallet-browser").click()
    expect(page.locator("#wallet-status")).to_contain_text(wallet.account.address)
    assert "personal_sign" in wallet.requests

    # Create an agent: it is minted to the wallet by a job, with a progress bar.
    page.get_by_role("tab", name="Agents").click()  # the studio opens on the Gallery
    _field(page, "agent-name").fill("Orla")
    _field(page, "agent-description").fill("{{char}} keeps the lighthouse.")
    page.locator("#agent-save").click()
    expect(page.locator("#agent-status")).to_contain_text("Created Orla")
    page.locator("#agent-tab-chain-button").click()  # the editor's On-chain tab
    owner = page.locator("#chain-owner")
    expect(owner).to_contain_text(wallet.account.address)
    expect(page.locator("#chain-match")).to_contain_text("matches")
    expect(page.locator("#chain-version")).to_have_text("0")
    agent = services.agents.list_agents()[0]
    assert agent.mint_state == "minted" and agent.owner_address == wallet.account.address
    tba = services.chain.status(agent.id).token_bound_account
    expect(page.locator("#chain-tba")).to_have_attribute("title", tba or "")

    # Edit: accepted; the new card waits for the holder's EIP-712 signature.
    page.locator("#agent-tab-card-button").click()
    _field(page, "agent-description").fill("{{char}} keeps the lighthouse and its lamp.")
    page.locator("#agent-save").click()
    expect(page.locator("#agent-status")).to_contain_text("Saved Orla")
    page.locator("#agent-tab-chain-button").click()
    expect(page.locator("#chain-match")).to_contain_text("differs")
    page.locator("#agent-anchor").click()
    expect(page.locator("#agent-chain-message")).to_contain_text("being relayed")
    assert "eth_signTypedData_v4" in wallet.requests
    wait_until(
        lambda: services.chain.status(agent.id).card_version == 1,
        interval=0.2,
        message="the signed card update to be relayed",
    )
    page.locator("#agent-chain-refresh").click()
    expect(page.locator("#chain-version")).to_have_text("1")
    expect(page.locator("#chain-match")).to_contain_text("matches")
    page.screenshot(path=str(SCREENSHOT), full_page=True)

    # Signed out, the same browser may no longer change the minted agent.
    page.locator("#wallet-signout").click()
    expect(page.locator("#wallet-status")).to_contain_text("Not signed in")
    page.get_by_role("tab", name="Agents").click()  # signing out reloads onto the Gallery
    page.locator("#agent-select input").first.click()
    page.get_by_role("option", name=f"Orla · {agent.id[:8]}").click()
    # The reloaded page's form is empty until the pick loads it; typing before that load
    # lands would be overwritten by it.
    page.locator("#agent-tab-card-button").click()
    expect(_field(page, "agent-name")).to_have_value("Orla")
    _field(page, "agent-name").fill("Stolen")
    expect(_field(page, "agent-name")).to_have_value("Stolen")
    page.locator("#agent-save").click()
    expect(page.locator("#agent-status")).to_contain_text("sign in with that wallet")
    assert services.agents.get_agent(agent.id).name == "Orla"
