"""Who is calling: a wallet address signed in with Ethereum, an API key's owner, or nobody.

Kept in ``core`` (not ``chain``) so that any service can take a principal without importing
the chain: the owner check in ``chain.service.ChainService.require_owner`` is the one place
that decides what a principal may do with an agent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Via = Literal["session", "api_key", "anonymous"]


@dataclass(frozen=True)
class Principal:
    """The caller of a request. ``address`` is an EIP-55 checksum address, or ``None``."""

    address: str | None
    via: Via = "anonymous"
    # The session's id (the hash of its cookie), so sign-out and the local-wallet signer can
    # find it; never the cookie value itself.
    session_id: str | None = None

    @property
    def signed_in(self) -> bool:
        return self.address is not None

    def is_address(self, other: str | None) -> bool:
        """Addresses compare case-insensitively (checksum casing is only a typo guard)."""
        return (
            self.address is not None and other is not None and self.address.lower() == other.lower()
        )


ANONYMOUS = Principal(address=None)
