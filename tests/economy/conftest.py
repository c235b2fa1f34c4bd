"""Economy fixtures: AgentNFT + Payments deployed on eth-tester (and the session's anvil)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import pytest
from eth_account.signers.local import LocalAccount
from web3 import Web3
from web3.contract import Contract

from chain.base import Chain
from chain.contract import AgentNFT, load_artifact, token_id_of
from chain.deploy import deploy_agent_nft, deploy_contract
from chain.eth_tester_chain import EthTesterChain
from economy.contract import Payments, deploy_payments
from tests.chain.helpers import new_wallet


def send_tx(w3: Web3, account: LocalAccount, call: Any, value: int = 0) -> Any:
    """Sign and send ``call`` from ``account``; the receipt (status 0 on a revert)."""
    params = {
        "from": account.address,
        "value": value,
        "nonce": w3.eth.get_transaction_count(account.address, "pending"),
        "chainId": w3.eth.chain_id,
        "gas": 3_000_000,
        "maxFeePerGas": 2 * w3.eth.get_block("latest")["baseFeePerGas"] + 10**9,
        "maxPriorityFeePerGas": 10**9,
    }
    signed = account.sign_transaction(call.build_transaction(params))
    tx = w3.eth.send_raw_transaction(signed.raw_transaction)
    return w3.eth.wait_for_transaction_receipt(tx)


@dataclass
class Market:
    w3: Web3
    chain: Chain
    deployer: LocalAccount  # admin, minter and settler
    fee_recipient: LocalAccount
    nft: AgentNFT
    payments: Payments
    stable: Contract

    def send(self, account: LocalAccount, call: Any, value: int = 0) -> Any:
        return send_tx(self.w3, account, call, value)

    def wallet(self, wei: int = 10**20) -> LocalAccount:
        account = new_wallet()
        self.chain.fund(account.address, wei)
        return account

    def mint(self, owner: LocalAccount) -> int:
        agent_id = os.urandom(16).hex()
        receipt = self.send(
            self.deployer, self.nft.mint_call(owner.address, agent_id, "0x" + "ab" * 32)
        )
        assert receipt["status"] == 1
        return token_id_of(agent_id)

    def contract(self, name: str, address: str) -> Contract:
        return self.w3.eth.contract(address=address, abi=load_artifact(name)["abi"])

    def deploy(self, name: str, *args: Any) -> Contract:
        address, _, _ = deploy_contract(self.w3, self.deployer, name, *args)
        return self.contract(name, address)


def make_market(chain: Chain, fee_bps: int) -> Market:
    w3 = chain.web3
    deployer = new_wallet()
    fee_recipient = new_wallet()
    chain.fund(deployer.address, 10**21)
    deployment, _ = deploy_agent_nft(
        w3, deployer, base_uri="https://anima.test/api/nft/", royalty_bps=0
    )
    nft = AgentNFT(w3, deployment)
    pay, _ = deploy_payments(
        w3,
        deployer,
        agents=nft.address,
        settler=deployer.address,
        fee_recipient=fee_recipient.address,
        fee_bps=fee_bps,
        stablecoin=True,
    )
    assert pay.stablecoin is not None
    payments = Payments(w3, pay)
    stable = w3.eth.contract(address=pay.stablecoin, abi=load_artifact("TestStablecoin")["abi"])
    return Market(w3, chain, deployer, fee_recipient, nft, payments, stable)


@pytest.fixture(scope="module")
def market() -> Market:
    """A 2.5 % fee (250 bps), on an in-process chain."""
    chain = EthTesterChain()
    chain.start()
    return make_market(chain, fee_bps=250)
