"""Who may see and cancel a job: the wallet that submitted it, and the owner of its target.

A job shows what its target is doing (a document being indexed, an agent being minted or
trained) and can stop it, so it belongs to the same people as the target: the agent's owner
(the one owner check, ``OwnerCheck.require_owner``) or the wallet that owns an address-owned
target (a knowledge base). The wallet recorded as the job's ``owner`` keeps access too, even
after the target moved on (an agent transferred after its mint).

A job submitted anonymously on an anonymous draft, on no target, or on a target that was
deleted since, is as open as a draft (``OwnerCheck.require_address`` with no owner).
``SYSTEM`` (the app itself) may do anything.
"""

from __future__ import annotations

from collections.abc import Callable

from core.errors import (
    AnimaError,
    AuthError,
    ConversationAccessError,
    NotFoundError,
    NotOwnerError,
)
from core.jobs.view import JobView
from core.principal import OwnerCheck, Principal

# A target id -> the wallet that owns it (``None``: an anonymous draft); raises
# ``NotFoundError`` when the target is gone.
AddressOwner = Callable[[str], str | None]
# For targets owned otherwise (a conversation may belong to a browser, not a wallet): allow
# ``principal`` to change target ``id``, or raise (``NotFoundError`` when it is gone).
TargetCheck = Callable[[Principal, str], None]

AGENT_TARGET = "agent"


class JobAccess:
    """The rule, given the owner check and the owners of address-owned target types."""

    def __init__(self) -> None:
        self.owners: OwnerCheck | None = None
        self.address_owners: dict[str, AddressOwner] = {}
        self.target_checks: dict[str, TargetCheck] = {}

    def require(self, principal: Principal, view: JobView) -> None:
        """Allow ``principal`` to see and cancel the job, or raise 401/403 (503 when the
        holder of a minted target agent cannot be read now)."""
        if principal.is_system or principal.is_address(view.owner):
            return
        owners = self._owner_check()
        try:
            if self._target_allows(owners, principal, view):
                return
        except (AuthError, NotOwnerError, ConversationAccessError) as exc:
            submitted = f", submitted by {view.owner}," if view.owner else ""
            raise type(exc)(f"{_name(view)}{submitted} is not yours: {exc}") from exc
        # No target to ask about (none, or deleted since): the job is its submitter's.
        owners.require_address(principal, view.owner, _name(view), "the wallet that submitted it")

    def allows(
        self, principal: Principal, view: JobView, seen: dict[tuple[str | None, ...], bool]
    ) -> bool:
        """``require`` as a yes/no for lists; ``seen`` caches answers within one list."""
        key = (view.owner, view.target_type, view.target_id)
        if key not in seen:
            try:
                self.require(principal, view)
                seen[key] = True
            except AnimaError:  # includes a chain that cannot be read now: not shown
                seen[key] = False
        return seen[key]

    def _target_allows(self, owners: OwnerCheck, principal: Principal, view: JobView) -> bool:
        """True when the target's owner check lets ``principal`` through; False when there
        is no target to ask about (none, a type without owners, or deleted); raises when the
        target belongs to someone else."""
        if view.target_type is None or view.target_id is None:
            return False
        try:
            if view.target_type == AGENT_TARGET:
                owners.require_owner(principal, view.target_id)
                return True
            check = self.target_checks.get(view.target_type)
            if check is not None:
                check(principal, view.target_id)
                return True
            lookup = self.address_owners.get(view.target_type)
            if lookup is None:
                return False
            what = f"{view.target_type.replace('_', ' ')} '{view.target_id}'"
            owners.require_address(principal, lookup(view.target_id), what)
            return True
        except NotFoundError:
            return False

    def _owner_check(self) -> OwnerCheck:
        if self.owners is None:
            raise RuntimeError("JobService has no owner check (container.py wires it)")
        return self.owners


def _name(view: JobView) -> str:
    return f"job '{view.id}' ({view.kind})"
