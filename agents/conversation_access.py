"""Who may read and change a conversation: the one rule, for every conversation method.

A conversation belongs to whoever started it:
- a signed-in wallet (a session or an API key): ``owner_address``; the wallet reaches its
  chats from any browser;
- an anonymous visitor (the signed ``anima_visitor`` cookie, ``core.visitor``): ``visitor_id``;
  only that browser reaches them, until it signs in and they move to the wallet.
Conversations started before owners were recorded have neither: they stay open to everyone,
as they always were, and are marked ``shared`` until someone claims one.

The agent's owner has no say over users' chats (a card's author must not read its fans'
conversations); ``SYSTEM`` (the app's own jobs) may do anything. With ``ANIMA_CONVERSATIONS=
shared`` (one person on their own machine, as SillyTavern runs) everyone reaches every chat;
owners are still recorded, so switching back to ``private`` keeps each chat its owner's.

Every method that loads a conversation calls :meth:`ConversationAccess.require` right after
loading the row; listings filter with :meth:`ConversationAccess.visible`.
"""

from __future__ import annotations

from typing import Any, Literal

from sqlalchemy import ColumnElement, and_, false, func, or_, true

from agents.records import ConversationRecord
from core.errors import AuthError, ConversationAccessError, NotFoundError
from core.principal import Principal

Mode = Literal["private", "shared"]


def is_shared(row: ConversationRecord) -> bool:
    """Started before conversations had owners, and claimed by nobody since."""
    return row.owner_address is None and row.visitor_id is None


def owns(row: ConversationRecord, principal: Principal) -> bool:
    """``principal`` started ``row`` (or signed in with the browser that did)."""
    if row.owner_address is not None:
        return principal.is_address(row.owner_address)
    return principal.visitor_id is not None and principal.visitor_id == row.visitor_id


class ConversationAccess:
    def __init__(self, mode: Mode = "private") -> None:
        self.mode = mode

    # ----- the rule ------------------------------------------------------------------------
    def allows(self, row: ConversationRecord, principal: Principal) -> bool:
        return (
            principal.is_system or self.mode == "shared" or is_shared(row) or owns(row, principal)
        )

    def require(
        self, row: ConversationRecord, principal: Principal, *, write: bool = False
    ) -> None:
        """Allow ``principal`` to read (or, with ``write``, change) conversation ``row``.

        A read of someone else's chat is answered as if it did not exist (404), so ids cannot
        be probed; a change is refused with the reason (403).
        """
        if self.allows(row, principal):
            return
        if not write:
            raise NotFoundError(f"no conversation with id {row.id!r}")
        if row.owner_address is not None:
            raise ConversationAccessError(
                f"conversation {row.id!r} belongs to another wallet: only the wallet that "
                "started it can change it"
            )
        raise ConversationAccessError(
            f"conversation {row.id!r} belongs to another visitor: only the browser that started "
            "it (or the wallet it signed in with) can change it"
        )

    def visible(self, principal: Principal) -> ColumnElement[bool]:
        """The SQL condition for the conversations ``principal`` may list."""
        if principal.is_system or self.mode == "shared":
            return true()
        ownerless = and_(
            ConversationRecord.owner_address.is_(None), ConversationRecord.visitor_id.is_(None)
        )
        mine: list[ColumnElement[bool]] = [ownerless]
        if principal.address is not None:
            mine.append(func.lower(ConversationRecord.owner_address) == principal.address.lower())
        if principal.visitor_id is not None:
            mine.append(
                and_(
                    ConversationRecord.owner_address.is_(None),
                    ConversationRecord.visitor_id == principal.visitor_id,
                )
            )
        return or_(false(), *mine)

    # ----- owners --------------------------------------------------------------------------
    def owner_of_new(self, principal: Principal) -> dict[str, Any]:
        """The owner columns of a conversation ``principal`` starts now.

        A caller with no identity at all (no wallet, no visitor cookie) cannot start a private
        chat: nobody could ever open it again.
        """
        if principal.address is not None:
            return {"owner_address": principal.address, "visitor_id": None}
        if principal.visitor_id is not None:
            return {"owner_address": None, "visitor_id": principal.visitor_id}
        if principal.is_system or self.mode == "shared":
            return {"owner_address": None, "visitor_id": None}
        raise AuthError(
            "this browser has no visitor identity: allow cookies for this site, or sign in, "
            "to keep a private conversation"
        )

    def claim(self, row: ConversationRecord, principal: Principal) -> None:
        """Make a shared (ownerless) conversation ``principal``'s own."""
        if not (principal.address or principal.visitor_id):
            raise AuthError("sign in, or allow this site's visitor cookie, to claim a conversation")
        if not is_shared(row):
            if owns(row, principal):
                return  # already the caller's
            raise ConversationAccessError(
                f"conversation {row.id!r} already belongs to someone: only shared "
                "conversations (started before conversations had owners) can be claimed"
            )
        owner = self.owner_of_new(principal)
        row.owner_address, row.visitor_id = owner["owner_address"], owner["visitor_id"]
