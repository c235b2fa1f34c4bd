"""Deploying the contracts: the ERC-6551 registry and account implementation, then AgentNFT.

On a development chain (anvil, eth-tester) the app does this itself on first start; on any
other chain ``python app.py chain deploy`` does it once, and the address is remembered in
``<data_dir>/chain/deployment.json`` (or set with ``ANIMA_CHAIN_CONTRACT``).
"""

from __future__ import annotations

import logging
from typing import Any

from eth_account.signers.local import LocalAccount
from web3 import Web3

from chain.contract import Deployment, load_artifact
from chain.transactions import DEFAULT_PRIORITY_FEE
from core.errors import ChainError

log = logging.getLogger(__name__)

TOKEN_NAME = "Anima Agents"
TOKEN_SYMBOL = "ANIMA"


def deploy_contract(w3: Web3, account: LocalAccount, name: str, *args: Any) -> tuple[str, int, int]:
    """Deploy one artifact from ``account``; returns (address, block, gas used)."""
    artifact = load_artifact(name)
    factory = w3.eth.contract(abi=artifact["abi"], bytecode=artifact["bytecode"])
    constructor = factory.constructor(*args)
    params: dict[str, Any] = {
        "from": account.address,
        "nonce": w3.eth.get_transaction_count(account.address, "pending"),
        "chainId": w3.eth.chain_id,
    }
    base = w3.eth.get_block("latest").get("baseFeePerGas")
    if base is None:
        params["gasPrice"] = w3.eth.gas_price
    else:
        params.update(
            maxFeePerGas=2 * base + DEFAULT_PRIORITY_FEE, maxPriorityFeePerGas=DEFAULT_PRIORITY_FEE
        )
    params["gas"] = int(constructor.estimate_gas({"from": account.address}) * 1.2) + 50_000
    signed = account.sign_transaction(constructor.build_transaction(params))
    tx_hash = w3.eth.send_raw_transaction(signed.raw_transaction)
    receipt = w3.eth.wait_for_transaction_receipt(tx_hash, timeout=120)
    if receipt["status"] != 1 or not receipt["contractAddress"]:
        raise ChainError(f"deploying {name} failed (transaction {tx_hash.hex()})")
    return receipt["contractAddress"], int(receipt["blockNumber"]), int(receipt["gasUsed"])


def deploy_agent_nft(
    w3: Web3,
    account: LocalAccount,
    *,
    base_uri: str,
    royalty_bps: int,
    registry: str | None = None,
    implementation: str | None = None,
) -> tuple[Deployment, dict[str, int]]:
    """Deploy AgentNFT (and the ERC-6551 contracts unless given); the deployer is its admin,
    minter and relayer. Returns the deployment and the gas each contract cost."""
    gas: dict[str, int] = {}
    if registry is None:
        registry, _, gas["ERC6551Registry"] = deploy_contract(w3, account, "ERC6551Registry")
    if implementation is None:
        implementation, _, gas["ERC6551Account"] = deploy_contract(w3, account, "ERC6551Account")
    address, block, gas["AgentNFT"] = deploy_contract(
        w3, account, "AgentNFT",
        TOKEN_NAME, TOKEN_SYMBOL, base_uri, account.address, account.address,
        royalty_bps, registry, implementation,
    )  # fmt: skip
    deployment = Deployment(
        chain_id=int(w3.eth.chain_id),
        address=address,
        registry=registry,
        implementation=implementation,
        block=block,
        deployer=account.address,
    )
    log.info("deployed AgentNFT at %s on chain %s (block %s)", address, deployment.chain_id, block)
    return deployment, gas


def read_deployment(w3: Web3, address: str) -> Deployment:
    """A deployment described by the contract itself (``ANIMA_CHAIN_CONTRACT``)."""
    if not w3.eth.get_code(Web3.to_checksum_address(address)):
        raise ChainError(f"no contract at {address} on chain {w3.eth.chain_id}")
    nft = w3.eth.contract(
        address=Web3.to_checksum_address(address), abi=load_artifact("AgentNFT")["abi"]
    )
    return Deployment(
        chain_id=int(w3.eth.chain_id),
        address=Web3.to_checksum_address(address),
        registry=nft.functions.accountRegistry().call(),
        implementation=nft.functions.accountImplementation().call(),
        block=int(w3.eth.block_number),  # follow from now on: owners are read live anyway
        deployer="",
    )
