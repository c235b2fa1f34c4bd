"""Chain fixtures: one deployment per chain (eth-tester, the session's anvil) for the contract
tests, and one app on eth-tester per module for the API tests (dbos and the Gradio mount
start once per module)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from eth_account.signers.local import LocalAccount
from fastapi import FastAPI
from web3 import Web3

from agents.llm.pool import LLMPool
from chain.base import Chain
from chain.contract import AgentNFT, Deployment
from chain.deploy import deploy_agent_nft
from chain.eth_tester_chain import EthTesterChain
from container import Services, build_services
from tests.chain.helpers import fast_settings, new_wallet


@dataclass
class Stack:
    w3: Web3
    chain: Chain
    deployer: LocalAccount
    deployment: Deployment
    nft: AgentNFT
    gas: dict[str, int]


@pytest.fixture(scope="session", params=["eth-tester", "anvil"])
def tester_stack(request: pytest.FixtureRequest) -> Stack:
    """AgentNFT + ERC-6551 registry and account, deployed once on each chain: in-process
    (eth-tester) and on the session's real anvil node. Contract tests run on both."""
    chain: Chain
    if request.param == "anvil":
        chain = request.getfixturevalue("anvil_node")
    else:
        chain = EthTesterChain()
        chain.start()
    deployer = new_wallet()
    chain.fund(deployer.address, 10**21)
    deployment, gas = deploy_agent_nft(
        chain.web3, deployer, base_uri="https://anima.test/api/nft/", royalty_bps=500
    )
    return Stack(chain.web3, chain, deployer, deployment, AgentNFT(chain.web3, deployment), gas)


@pytest.fixture(scope="module")
def chain_services(
    tmp_path_factory: pytest.TempPathFactory, llm_pool: LLMPool
) -> Iterator[Services]:
    svc = build_services(fast_settings(tmp_path_factory.mktemp("chain-data")), llm=llm_pool)
    svc.chain.start(follow=False)
    yield svc
    svc.close()


@pytest.fixture(scope="module")
def chain_app(chain_services: Services) -> FastAPI:
    from app import create_app

    return create_app(services=chain_services)
