"""Who can pay for what right now: prepaid balances, reservations and unsettled charges.

Before a priced request generates anything it reserves its worst case (the whole context
window at the prompt price plus ``max_tokens`` at the completion price) against

    available = on-chain balance - open reservations - charges not yet settled

and is refused (402) when that is too little. The reservation stays open while the reply
streams, so concurrent requests of one wallet cannot together spend more than it holds; when
the reply ends its usage becomes a charge and the reservation closes.

Everything here is in memory under one lock, so the check on the request path costs a dict
lookup: the on-chain balance is cached for ``ANIMA_PAYMENTS_BALANCE_CACHE_S`` and dropped when a
settlement of that wallet is mined (the chain balance and the unsettled sum move together);
the unsettled sum of a wallet is read from the database once, then kept in step.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import select

from core.db import Database
from economy.prices import Price
from economy.records import ChargeRecord

Wallet = tuple[str, str]  # (payer address, lower case; currency)


@dataclass
class Reservation:
    """One request's hold on a wallet's balance, and the price it will be charged at."""

    payer: str
    currency: str
    amount: int
    price: Price
    agent_id: str
    token_id: int
    key_id: str | None
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    closed: bool = False


@dataclass(frozen=True)
class Shortage:
    available: int
    balance: int
    reserved: int
    unsettled: int


class Ledger:
    def __init__(
        self,
        db: Database,
        read_balance: Callable[[str, str], int],
        cache_s: float = 5.0,
    ) -> None:
        self.db = db
        self._read_balance = read_balance
        self.cache_s = cache_s
        self._lock = threading.Lock()
        # Loading a wallet's unsettled sum and storing a charge exclude each other, so a charge
        # is counted exactly once (in the loaded sum or added after it), never on the fast path.
        self._load_lock = threading.Lock()
        self._balances: dict[Wallet, tuple[int, float]] = {}
        self._reserved: dict[Wallet, int] = {}
        self._unsettled: dict[Wallet, int] = {}

    # ----- the request path -----------------------------------------------------------------
    def reserve(self, r: Reservation) -> Shortage | None:
        """Hold ``r.amount``; ``None`` when held, else what the wallet has (nothing held)."""
        wallet = (r.payer.lower(), r.currency)
        balance = self._balance(wallet)
        unsettled = self._unsettled_of(wallet)
        with self._lock:
            reserved = self._reserved.get(wallet, 0)
            unsettled = self._unsettled.get(wallet, unsettled)
            available = balance - reserved - unsettled
            if r.amount > available:
                return Shortage(max(available, 0), balance, reserved, unsettled)
            self._reserved[wallet] = reserved + r.amount
        return None

    def release(self, r: Reservation) -> None:
        """Close a reservation without a charge (the request failed before it started)."""
        with self._lock:
            self._close(r)

    def charge(self, r: Reservation, row: ChargeRecord) -> None:
        """Store the reply's charge, then turn the reservation into it. A charge that could
        not be stored closes the reservation anyway (the audit reports the usage record)."""
        wallet = (r.payer.lower(), r.currency)
        with self._load_lock:
            try:
                with self.db.session() as s:
                    s.add(row)
            finally:
                with self._lock:
                    self._close(r)
            with self._lock:
                if wallet in self._unsettled:
                    self._unsettled[wallet] += int(row.amount)

    def _close(self, r: Reservation) -> None:
        if r.closed:
            return
        r.closed = True
        wallet = (r.payer.lower(), r.currency)
        self._reserved[wallet] = self._reserved.get(wallet, 0) - r.amount

    # ----- what the settlement tells it --------------------------------------------------
    def settled(self, amounts: dict[Wallet, int]) -> None:
        """Charges of these wallets settled on chain: they leave the unsettled sums and the
        cached balances are read again."""
        with self._lock:
            for wallet, amount in amounts.items():
                if wallet in self._unsettled:
                    self._unsettled[wallet] -= amount
                self._balances.pop(wallet, None)

    def settling(self) -> threading.Lock:
        """Held while charges are marked settled, so a wallet's sum is not loaded halfway."""
        return self._load_lock

    def forget_balance(self, payer: str, currency: str) -> None:
        with self._lock:
            self._balances.pop((payer.lower(), currency), None)

    # ----- reads ------------------------------------------------------------------------
    def state(self, payer: str, currency: str, fresh: bool = False) -> Shortage:
        wallet = (payer.lower(), currency)
        if fresh:
            self.forget_balance(payer, currency)
        balance = self._balance(wallet)
        unsettled = self._unsettled_of(wallet)
        with self._lock:
            reserved = self._reserved.get(wallet, 0)
            return Shortage(balance - reserved - unsettled, balance, reserved, unsettled)

    def _balance(self, wallet: Wallet) -> int:
        now = time.monotonic()
        cached = self._balances.get(wallet)
        if cached is not None and now - cached[1] < self.cache_s:
            return cached[0]
        value = self._read_balance(*wallet)
        with self._lock:
            self._balances[wallet] = (value, now)
        return value

    def _unsettled_of(self, wallet: Wallet) -> int:
        known = self._unsettled.get(wallet)
        if known is not None:
            return known
        with self._load_lock:
            if wallet in self._unsettled:
                return self._unsettled[wallet]
            with self.db.session() as s:
                amounts = s.scalars(
                    select(ChargeRecord.amount).where(
                        ChargeRecord.payer == wallet[0],
                        ChargeRecord.currency == wallet[1],
                        ChargeRecord.status != "settled",
                    )
                ).all()
            with self._lock:
                return self._unsettled.setdefault(wallet, sum(int(a) for a in amounts))
