"""Who is calling: a wallet address signed in with Ethereum, an API key's owner, or nobody.

Kept in ``core`` (not ``chain``) so that any service can take a principal without importing
the chain: the owner check in ``chain.service.ChainService.require_owner`` is the one place
that decides what a principal may do with an agent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Protocol

Via = Literal["session", "api_key", "anonymous", "system"]


@dataclass(frozen=True)
class Principal:
    """The caller of a request. ``address`` is an EIP-55 checksum address, or ``None``."""

    address: str | None
    via: Via = "anonymous"
    # The session's id (the hash of its cookie), so sign-out and the local-wallet signer can
    # find it; never the cookie value itself.
    session_id: str | None = None
    # The API key a request came with (its row id, never the key), so limits, usage and
    # scheduling can be kept per key; ``None`` for sessions and anonymous callers.
    key_id: str | None = None
    # A browser's anonymous identity (from a signed cookie), so visitors who never sign in
    # still own their conversations (``core.visitor``); set for every caller whose browser sent
    # a valid cookie, signed in or not (signing in moves that browser's chats to the wallet).
    visitor_id: str | None = None

    @property
    def is_system(self) -> bool:
        return self.via == "system"

    @property
    def signed_in(self) -> bool:
        return self.address is not None

    def is_address(self, other: str | None) -> bool:
        """Addresses compare case-insensitively (checksum casing is only a typo guard)."""
        return (
            self.address is not None and other is not None and self.address.lower() == other.lower()
        )


ANONYMOUS = Principal(address=None)

# The app acting on its own behalf: background jobs resuming after a restart, the chain
# follower mirroring a transfer. Never built from a request (``api/deps.caller`` and the UI's
# ``principal_of`` only return wallets or anonymous callers, with a visitor id or without),
# so no caller can claim it.
SYSTEM = Principal(address=None, via="system")


class OwnerCheck(Protocol):
    """What a service needs to ask before a change: implemented by ``ChainService``.

    Services other than the chain take one of these (wired in ``container.py``) instead of
    importing the chain, so every rule about who may change what stays in one place.
    """

    def require_owner(self, principal: Principal, agent_id: str) -> Any:
        """Allow a change to agent ``agent_id`` (and what belongs to it), or raise 401/403/503."""
        ...

    def require_address(self, principal: Principal, owner: str | None, what: str) -> None:
        """Allow a change to something owned by wallet ``owner`` (``None``: an anonymous
        draft), or raise 401/403. ``what`` names the thing in the message."""
        ...

    def require_creator(self, principal: Principal) -> None:
        """Allow ``principal`` to create something at all, or raise 401."""
        ...
