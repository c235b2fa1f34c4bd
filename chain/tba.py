"""ERC-6551 token-bound account addresses, computed off chain.

An agent's account address is a pure function of the registry, the account implementation,
the salt, the chain id, the token contract and the token id (CREATE2 of a fixed ERC-1167 proxy
with that context appended), exactly what ``ERC6551Registry.account`` returns. Computing it
here needs no node, so the UI shows an agent's account even while the chain is down.
"""

from __future__ import annotations

from eth_utils import keccak, to_bytes, to_checksum_address

# ERC-1167 proxy creation code around the implementation address (ERC6551BytecodeLib).
_HEADER = bytes.fromhex("3d60ad80600a3d3981f3363d3d373d3d3d363d73")
_FOOTER = bytes.fromhex("5af43d82803e903d91602b57fd5bf3")


def _word(value: int) -> bytes:
    return value.to_bytes(32, "big")


def creation_code(
    implementation: str, salt: bytes, chain_id: int, token_contract: str, token_id: int
) -> bytes:
    return (
        _HEADER
        + to_bytes(hexstr=implementation)
        + _FOOTER
        + salt.rjust(32, b"\0")
        + _word(chain_id)
        + to_bytes(hexstr=token_contract).rjust(32, b"\0")
        + _word(token_id)
    )


def account_address(
    registry: str,
    implementation: str,
    chain_id: int,
    token_contract: str,
    token_id: int,
    salt: bytes = b"\0" * 32,
) -> str:
    """The checksum address ``registry.account(implementation, salt, chainId, token, id)``."""
    code_hash = keccak(creation_code(implementation, salt, chain_id, token_contract, token_id))
    digest = keccak(b"\xff" + to_bytes(hexstr=registry) + salt.rjust(32, b"\0") + code_hash)
    return to_checksum_address(digest[12:])
