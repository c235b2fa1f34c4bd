"""The AgentNFT contract from Python: artifacts, deployment, reads, and EIP-712 card updates.

The ABI and bytecode come from ``chain/artifacts/`` (compiled by ``make contracts`` and
committed; a test recompiles and compares), so running Anima never needs the compiler.
Reads return plain Python values; writes are returned as unsent contract calls that
``chain.transactions.TxSender`` signs, records and sends exactly once.
"""

from __future__ import annotations

import ast
import json
import re
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path
from typing import Any

from eth_account.messages import encode_typed_data
from eth_account.signers.local import LocalAccount
from eth_utils import keccak, to_checksum_address
from web3 import Web3
from web3.contract import Contract
from web3.contract.contract import ContractFunction
from web3.exceptions import BadFunctionCallOutput, ContractCustomError, ContractLogicError

from chain import tba
from core.errors import ChainError, ValidationError

try:  # eth-tester reports reverts with its own exception (web3 does not translate them)
    from eth_tester.exceptions import TransactionFailed as _TesterRevert
except ImportError:  # pragma: no cover - eth-tester is a test-time chain
    _TesterRevert = ContractLogicError  # type: ignore[assignment,misc]

# Every exception meaning "the contract reverted", whichever chain answered.
REVERTS: tuple[type[BaseException], ...] = (ContractCustomError, ContractLogicError, _TesterRevert)

ARTIFACTS_DIR = Path(__file__).resolve().parent / "artifacts"
ZERO_ADDRESS = "0x0000000000000000000000000000000000000000"
_AGENT_ID = re.compile(r"^[0-9a-f]{32}$")
CARD_UPDATE_TYPES = [
    {"name": "tokenId", "type": "uint256"},
    {"name": "cardHash", "type": "bytes32"},
    {"name": "version", "type": "uint64"},
    {"name": "deadline", "type": "uint256"},
]
EIP712_NAME = "Anima AgentNFT"
EIP712_VERSION = "1"


@cache
def load_artifact(name: str) -> dict[str, Any]:
    """``{"abi", "bytecode", ...}`` of a compiled contract (AgentNFT, ERC6551Registry, ...)."""
    return json.loads((ARTIFACTS_DIR / f"{name}.json").read_text())


def token_id_of(agent_id: str) -> int:
    """The agent's token id: ``uint256(keccak256(bytes16(uuid)))``, as the contract computes it.

    Agent ids are UUID4 hex strings; the contract takes their 16 bytes (cheaper calldata than
    a string, and the same id can never map to two tokens).
    """
    if not _AGENT_ID.match(agent_id):
        raise ValidationError(
            f"agent id {agent_id!r} is not a 32-digit hex UUID; it cannot be minted"
        )
    return int.from_bytes(keccak(bytes.fromhex(agent_id)), "big")


def hash_bytes(card_hash: str) -> bytes:
    """``0x`` + 64 hex digits to the 32 bytes the contract stores."""
    raw = bytes.fromhex(card_hash.removeprefix("0x"))
    if len(raw) != 32:
        raise ValidationError(f"card hash {card_hash!r} is not 32 bytes")
    return raw


@dataclass(frozen=True)
class Deployment:
    """Where the contracts live on one chain; saved as JSON in ``<data_dir>/chain``."""

    chain_id: int
    address: str
    registry: str
    implementation: str
    block: int
    deployer: str

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> Deployment:
        return cls(**json.loads(text))


def card_update_typed_data(
    chain_id: int, contract: str, token_id: int, card_hash: str, version: int, deadline: int
) -> dict[str, Any]:
    """The EIP-712 message a holder signs to have a card update relayed for them.

    The same dict goes to a browser wallet (``eth_signTypedData_v4``, after JSON encoding; the
    uint256 values are sent as decimal strings) and to ``eth_account`` for local wallets.
    """
    return {
        "types": {
            "EIP712Domain": [
                {"name": "name", "type": "string"},
                {"name": "version", "type": "string"},
                {"name": "chainId", "type": "uint256"},
                {"name": "verifyingContract", "type": "address"},
            ],
            "CardUpdate": CARD_UPDATE_TYPES,
        },
        "primaryType": "CardUpdate",
        "domain": {
            "name": EIP712_NAME,
            "version": EIP712_VERSION,
            "chainId": chain_id,
            "verifyingContract": to_checksum_address(contract),
        },
        "message": {
            "tokenId": str(token_id),
            "cardHash": card_hash,
            "version": version,
            "deadline": deadline,
        },
    }


def _typed_for_signing(typed: dict[str, Any]) -> dict[str, Any]:
    message = dict(typed["message"])
    message["tokenId"] = int(message["tokenId"])
    message["cardHash"] = hash_bytes(message["cardHash"])
    return {**typed, "message": message}


def sign_card_update(account: LocalAccount, typed: dict[str, Any]) -> str:
    """Sign a ``card_update_typed_data`` message with a local key; ``0x`` hex signature."""
    signed = account.sign_message(encode_typed_data(full_message=_typed_for_signing(typed)))
    return "0x" + signed.signature.hex().removeprefix("0x")


def recover_card_update_signer(typed: dict[str, Any], signature: str) -> str:
    """Who signed a card update (for a clear error before anything is sent)."""
    from eth_account import Account

    return Account.recover_message(
        encode_typed_data(full_message=_typed_for_signing(typed)), signature=signature
    )


class AgentNFT:
    """Read calls and unsent write calls of one deployed AgentNFT."""

    def __init__(self, w3: Web3, deployment: Deployment) -> None:
        self.w3 = w3
        self.deployment = deployment
        self.address = deployment.address
        self.contract: Contract = w3.eth.contract(
            address=to_checksum_address(deployment.address), abi=load_artifact("AgentNFT")["abi"]
        )

    # ----- reads ------------------------------------------------------------------------
    def owner_of(self, token_id: int) -> str | None:
        """The holder, or ``None`` when the token does not exist (not minted yet)."""
        try:
            return self.contract.functions.ownerOf(token_id).call()
        except BadFunctionCallOutput as exc:
            raise ChainError(
                f"no AgentNFT contract answers at {self.address} on chain "
                f"{self.deployment.chain_id} (was the chain reset?)"
            ) from exc
        except REVERTS as exc:
            if "ERC721NonexistentToken" in describe_revert(exc):
                return None
            raise

    def card_of(self, token_id: int) -> tuple[str, int] | None:
        """``("0x<card hash>", version)``; ``None`` when the token does not exist."""
        try:
            card_hash, version = self.contract.functions.cardOf(token_id).call()
        except REVERTS as exc:
            if "ERC721NonexistentToken" in describe_revert(exc):
                return None
            raise
        return "0x" + bytes(card_hash).hex(), int(version)

    def royalty_info(self, token_id: int, sale_price: int) -> tuple[str, int]:
        receiver, amount = self.contract.functions.royaltyInfo(token_id, sale_price).call()
        return receiver, int(amount)

    def royalty_bps(self) -> int:
        return int(self.contract.functions.royaltyBps().call())

    def token_account(self, token_id: int) -> str:
        """The ERC-6551 account address (computed here; equal to the contract's answer)."""
        d = self.deployment
        return tba.account_address(d.registry, d.implementation, d.chain_id, d.address, token_id)

    # ----- writes (unsent) ----------------------------------------------------------------
    def mint_call(self, to: str, agent_id: str, card_hash: str) -> ContractFunction:
        token_id_of(agent_id)  # validates the id
        return self.contract.functions.mint(
            to_checksum_address(to), bytes.fromhex(agent_id), hash_bytes(card_hash)
        )

    def update_call(self, token_id: int, card_hash: str) -> ContractFunction:
        return self.contract.functions.updateCard(token_id, hash_bytes(card_hash))

    def update_with_sig_call(
        self,
        token_id: int,
        card_hash: str,
        version: int,
        deadline: int,
        signer: str,
        signature: str,
    ) -> ContractFunction:
        return self.contract.functions.updateCardWithSig(
            token_id,
            hash_bytes(card_hash),
            version,
            deadline,
            to_checksum_address(signer),
            bytes.fromhex(signature.removeprefix("0x")),
        )

    def typed_update(self, token_id: int, card_hash: str, version: int, deadline: int) -> dict:
        return card_update_typed_data(
            self.deployment.chain_id, self.address, token_id, card_hash, version, deadline
        )


# ----- reverts ------------------------------------------------------------------------------


@cache
def _error_selectors() -> dict[bytes, tuple[str, list[str]]]:
    """4-byte selector -> (error name, argument types) over every contract we ship."""
    selectors: dict[bytes, tuple[str, list[str]]] = {}
    for name in ("AgentNFT", "ERC6551Registry", "ERC6551Account", "AgentShares", "Payments"):
        for item in load_artifact(name)["abi"]:
            if item.get("type") == "error":
                types = [i["type"] for i in item["inputs"]]
                signature = f"{item['name']}({','.join(types)})"
                selectors[keccak(text=signature)[:4]] = (item["name"], types)
    return selectors


def _revert_bytes(exc: BaseException) -> bytes | None:
    data = getattr(exc, "data", None)
    if isinstance(data, str) and data.startswith("0x") and len(data) >= 10:
        return bytes.fromhex(data[2:])
    text = str(exc.args[0]) if exc.args else ""
    marker = "execution reverted: b"
    if text.startswith(marker):  # eth-tester: the revert data as a Python bytes literal
        try:
            value = ast.literal_eval(text[len("execution reverted: ") :])
        except (ValueError, SyntaxError):
            return None
        return value if isinstance(value, bytes) else None
    return None


def describe_revert(exc: BaseException) -> str:
    """A revert as ``Name(arg, ...)`` (custom errors decoded with our ABIs) or its message."""
    raw = _revert_bytes(exc)
    if raw is not None and len(raw) >= 4:
        known = _error_selectors().get(raw[:4])
        if known is not None:
            name, types = known
            try:
                from eth_abi import decode

                args = decode(types, raw[4:])
                shown = ", ".join(a.hex() if isinstance(a, bytes) else str(a) for a in args)
                return f"{name}({shown})"
            except Exception:
                return name
    message = getattr(exc, "message", None) or str(exc)
    return str(message)
