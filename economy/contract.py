"""The ``Payments`` contract (and the test stablecoin) from Python: deploy, read, settle.

Where they live is remembered beside AgentNFT's deployment, in
``<data_dir>/chain/payments.json``, or given with ``ANIMA_PAYMENTS_CONTRACT``. On a development
chain the app deploys both on first use, with the minter as the settler.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

from eth_account.signers.local import LocalAccount
from eth_utils import to_checksum_address
from web3 import Web3
from web3.contract import Contract
from web3.contract.contract import ContractFunction
from web3.logs import DISCARD

from chain.contract import ZERO_ADDRESS, load_artifact
from chain.deploy import deploy_contract
from economy.records import NATIVE


@dataclass(frozen=True)
class PaymentsDeployment:
    chain_id: int
    address: str
    agents: str  # the AgentNFT it pays agents' accounts of
    settler: str
    fee_recipient: str
    fee_bps: int
    stablecoin: str | None  # the test stablecoin (development chains only)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> PaymentsDeployment:
        return cls(**json.loads(text))


def token_address(currency: str) -> str:
    """The contract's token argument: ``address(0)`` for the native coin."""
    return ZERO_ADDRESS if currency == NATIVE else to_checksum_address(currency)


def deploy_payments(
    w3: Web3,
    account: LocalAccount,
    *,
    agents: str,
    settler: str,
    fee_recipient: str | None = None,
    fee_bps: int = 0,
    stablecoin: bool = False,
) -> tuple[PaymentsDeployment, dict[str, int]]:
    """Deploy Payments (and the test stablecoin when asked); returns it and the gas spent."""
    gas: dict[str, int] = {}
    recipient = fee_recipient or account.address
    address, _, gas["Payments"] = deploy_contract(
        w3, account, "Payments", agents, settler, recipient, fee_bps
    )
    coin = None
    if stablecoin:
        coin, _, gas["TestStablecoin"] = deploy_contract(w3, account, "TestStablecoin")
    deployment = PaymentsDeployment(
        chain_id=int(w3.eth.chain_id),
        address=address,
        agents=to_checksum_address(agents),
        settler=to_checksum_address(settler),
        fee_recipient=to_checksum_address(recipient),
        fee_bps=fee_bps,
        stablecoin=coin,
    )
    return deployment, gas


def read_payments(w3: Web3, address: str) -> PaymentsDeployment:
    """A deployment described by the contract itself (``ANIMA_PAYMENTS_CONTRACT``)."""
    c = w3.eth.contract(address=to_checksum_address(address), abi=load_artifact("Payments")["abi"])
    return PaymentsDeployment(
        chain_id=int(w3.eth.chain_id),
        address=to_checksum_address(address),
        agents=c.functions.agents().call(),
        settler=c.functions.settler().call(),
        fee_recipient=c.functions.feeRecipient().call(),
        fee_bps=int(c.functions.feeBps().call()),
        stablecoin=None,
    )


class Payments:
    """Reads and unsent writes of one deployed Payments contract."""

    def __init__(self, w3: Web3, deployment: PaymentsDeployment) -> None:
        self.w3 = w3
        self.deployment = deployment
        self.address = deployment.address
        self.contract: Contract = w3.eth.contract(
            address=to_checksum_address(deployment.address), abi=load_artifact("Payments")["abi"]
        )

    def balance_of(self, payer: str, currency: str) -> int:
        return int(
            self.contract.functions.balanceOf(
                to_checksum_address(payer), token_address(currency)
            ).call()
        )

    def settled_at(self, batch_id: str) -> int:
        """The block the batch settled in; 0: not settled."""
        return int(self.contract.functions.settledAt(bytes.fromhex(batch_id[2:])).call())

    def revenue_share(self, token_id: int) -> tuple[str, int]:
        shares, bps = self.contract.functions.revenueShareOf(token_id).call()
        return shares, int(bps)

    def settle_call(self, batch_id: str, lines: list[SettleLine]) -> ContractFunction:
        return self.contract.functions.settle(
            bytes.fromhex(batch_id[2:]),
            [to_checksum_address(line.payer) for line in lines],
            [line.token_id for line in lines],
            [token_address(line.currency) for line in lines],
            [line.amount for line in lines],
        )

    def settled_lines(self, tx_hash: str) -> tuple[str, list[SettleLine]]:
        """The batch id and lines of a mined ``settle`` transaction, read from its input: what
        anyone can check without Anima's database."""
        tx = self.w3.eth.get_transaction(tx_hash)
        _fn, args = self.contract.decode_function_input(tx["input"])
        batch_id = "0x" + bytes(args["batchId"]).hex()
        lines = [
            SettleLine(
                payer=payer.lower(),  # as charges store it
                token_id=int(token_id),
                currency=NATIVE if token == ZERO_ADDRESS else to_checksum_address(token),
                amount=int(amount),
            )
            for payer, token_id, token, amount in zip(
                args["payers"], args["agentIds"], args["tokens"], args["amounts"], strict=True
            )
        ]
        return batch_id, lines

    def batch_events(self, from_block: int = 0) -> list[dict[str, Any]]:
        """Every ``BatchSettled`` event: batch id, block, transaction."""
        logs = self.contract.events.BatchSettled().get_logs(from_block=from_block)
        return [
            {
                "batch_id": "0x" + bytes(e["args"]["batchId"]).hex(),
                "block": int(e["blockNumber"]),
                "tx_hash": "0x" + bytes(e["transactionHash"]).hex().removeprefix("0x"),
            }
            for e in logs
        ]

    def shortfalls(self, tx_hash: str) -> list[dict[str, Any]]:
        receipt = self.w3.eth.get_transaction_receipt(tx_hash)
        return [
            dict(e["args"])
            for e in self.contract.events.Shortfall().process_receipt(receipt, errors=DISCARD)
        ]


@dataclass(frozen=True, order=True)
class SettleLine:
    """One debit of a batch: what ``payer`` owes agent ``token_id`` in ``currency``."""

    currency: str
    token_id: int
    payer: str
    amount: int
