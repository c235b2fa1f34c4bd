"""One agent's ``AgentShares`` contract (ERC-7641) from Python: deploy, reads, unsent writes.

Like ``chain.contract.AgentNFT``: reads return plain values, writes are returned as unsent
contract calls that a sender signs (the platform's relayer for issuing and snapshots, the
holder's own wallet for claims and burns, which pay ``msg.sender``).
"""

from __future__ import annotations

from typing import Any

from eth_utils import to_checksum_address
from web3 import Web3
from web3.contract import Contract
from web3.contract.contract import ContractConstructor, ContractFunction

from chain.contract import load_artifact

ARTIFACT = "AgentShares"
MAX_BPS = 10_000


def shares_constructor(
    w3: Web3,
    *,
    name: str,
    symbol: str,
    supply: int,
    issuer: str,
    agent_nft: str,
    agent_token_id: int,
    revenue_bps: int,
    claimable_bps: int,
) -> ContractConstructor:
    """The unsent deployment of a shares contract that mints ``supply`` to ``issuer``."""
    artifact = load_artifact(ARTIFACT)
    factory = w3.eth.contract(abi=artifact["abi"], bytecode=artifact["bytecode"])
    return factory.constructor(
        name,
        symbol,
        supply,
        to_checksum_address(issuer),
        to_checksum_address(agent_nft),
        agent_token_id,
        revenue_bps,
        claimable_bps,
    )


class AgentSharesContract:
    """Read calls and unsent write calls of one deployed AgentShares."""

    def __init__(self, w3: Web3, address: str) -> None:
        self.w3 = w3
        self.address = to_checksum_address(address)
        self.contract: Contract = w3.eth.contract(
            address=self.address, abi=load_artifact(ARTIFACT)["abi"]
        )

    # ----- reads ------------------------------------------------------------------------
    def _call(self, name: str, *args: Any) -> Any:
        return getattr(self.contract.functions, name)(*args).call()

    def total_supply(self) -> int:
        return int(self._call("totalSupply"))

    def balance_of(self, account: str) -> int:
        return int(self._call("balanceOf", to_checksum_address(account)))

    def current_snapshot(self) -> int:
        return int(self._call("currentSnapshotId"))

    def pending_revenue(self) -> int:
        return int(self._call("pendingRevenue"))

    def total_received(self) -> int:
        return int(self._call("totalReceived"))

    def revenue_at(self, snapshot_id: int) -> tuple[int, int]:
        received, claimable = self._call("revenueAt", snapshot_id)
        return int(received), int(claimable)

    def claimable(self, account: str, snapshot_id: int) -> int:
        return int(self._call("claimableRevenue", to_checksum_address(account), snapshot_id))

    def has_claimed(self, account: str, snapshot_id: int) -> bool:
        return bool(self._call("hasClaimed", to_checksum_address(account), snapshot_id))

    def redeemable_on_burn(self, amount: int) -> int:
        return int(self._call("redeemableOnBurn", amount))

    def coin_balance(self) -> int:
        return int(self.w3.eth.get_balance(self.address))

    def holders(self, from_block: int = 0) -> dict[str, int]:
        """Every address that ever received shares, with its balance now (from ``Transfer``)."""
        seen: list[str] = []
        logs = self.contract.events.Transfer().get_logs(from_block=from_block)
        for log in logs:
            to = log["args"]["to"]
            if int(to, 16) != 0 and to not in seen:
                seen.append(to)
        return {address: self.balance_of(address) for address in seen}

    def snapshots(self, from_block: int = 0) -> list[dict[str, int]]:
        """Each snapshot's id, block, revenue and claimable part (from ``Snapshot`` events)."""
        logs = self.contract.events.Snapshot().get_logs(from_block=from_block)
        return [
            {
                "snapshot_id": int(log["args"]["snapshotId"]),
                "block": int(log["blockNumber"]),
                "revenue": int(log["args"]["revenue"]),
                "claimable": int(log["args"]["claimable"]),
            }
            for log in logs
        ]

    # ----- writes (unsent) ----------------------------------------------------------------
    def encode(self, function: str, *args: Any) -> str:
        """Calldata of ``function(*args)``, for a wallet that sends the transaction itself."""
        return self.contract.encode_abi(function, args=list(args))

    def snapshot_call(self) -> ContractFunction:
        return self.contract.functions.snapshot()

    def claim_call(self, snapshot_id: int) -> ContractFunction:
        return self.contract.functions.claim(snapshot_id)

    def burn_call(self, amount: int) -> ContractFunction:
        return self.contract.functions.burn(amount)

    def transfer_call(self, to: str, amount: int) -> ContractFunction:
        return self.contract.functions.transfer(to_checksum_address(to), amount)
