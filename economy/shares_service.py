"""Revenue shares of an agent (the "initial model offering"): issue, holders, snapshots, claims.

An agent's token holder issues a fixed supply of ERC-7641 shares once (``AgentShares``,
deployed by the platform's relayer, the same minter account that mints and relays card
updates, so the owner pays no gas); the whole supply goes to the holder, who keeps some and
transfers the rest. The payment contract sends the agreed part of the agent's income to the
shares contract; anyone may take a snapshot, and each holder claims their part of a snapshot
from their own wallet (a claim pays ``msg.sender``, so it cannot be relayed).

The chain is the record of balances, snapshots and claims: this service only remembers where
each agent's contract is (``agent_shares``) and reads the rest from the node. Reads are
public, like the chain; issuing and a relayed snapshot take the agent's owner.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Protocol

from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from web3 import Web3

from chain.service import ChainService
from chain.transactions import TxReverted, reaching_node
from core.db import Database
from core.errors import ConflictError, NotFoundError, ValidationError
from core.principal import Principal
from economy.shares_contract import MAX_BPS, AgentSharesContract, shares_constructor
from economy.shares_records import AgentSharesRecord

MAX_SUPPLY = 10**30  # whole tokens times 10**18 stays far below uint208 (the checkpoints' width)
DEFAULT_CLAIMABLE_BPS = 8_000
_SYMBOL = re.compile(r"^[A-Z0-9]{1,11}$")


class IssueRequest(BaseModel):
    """What the owner chooses once: supply (whole tokens, 18 decimals), name and symbol, the
    part of the agent's income that goes to holders, and how much of each snapshot they claim
    (the rest backs the tokens: burning pays it out)."""

    supply: int
    name: str
    symbol: str
    revenue_bps: int
    claimable_bps: int = DEFAULT_CLAIMABLE_BPS


class SharesView(BaseModel):
    agent_id: str
    chain_id: int
    address: str
    name: str
    symbol: str
    supply: str  # base units (18 decimals), as a decimal string
    supply_tokens: str
    revenue_bps: int
    claimable_bps: int
    issuer: str
    tx_hash: str
    block: int
    issued_at: datetime | None = None
    current_snapshot: int | None = None
    pending_revenue_wei: str | None = None
    total_received_wei: str | None = None
    balance_wei: str | None = None


class Holder(BaseModel):
    address: str
    balance: str
    balance_tokens: str
    percent: float


class SnapshotView(BaseModel):
    snapshot_id: int
    block: int
    time: datetime | None
    revenue_wei: str
    claimable_wei: str


class Claimable(BaseModel):
    snapshot_id: int
    amount_wei: str
    claimed: bool


class TxRequest(BaseModel):
    """An unsigned transaction for the caller's wallet (``eth_sendTransaction``)."""

    chain_id: int
    to: str
    data: str
    value: str = "0x0"
    description: str


class Holding(BaseModel):
    agent_id: str
    agent_name: str
    address: str
    symbol: str
    balance_tokens: str
    percent: float
    claimable_wei: str
    claimable: list[Claimable]


class RevenueView(BaseModel):
    """The Revenue panel's numbers: the agent's own account and its shares (if issued)."""

    agent_id: str
    minted: bool
    token_bound_account: str | None
    account_balance_wei: str | None
    shares: SharesView | None
    income: list[SnapshotView]


def tokens(units: int) -> str:
    """18-decimal base units as a plain decimal string (``1.5``)."""
    text = format(Decimal(units) / Decimal(10**18), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def coins(wei: int | str | None, symbol: str = "ETH") -> str:
    """Wei for people: ``0.0125 ETH`` (up to 8 decimals; never rounds a non-zero up to 0)."""
    if wei is None:
        return "-"
    value = Decimal(int(wei)) / Decimal(10**18)
    text = f"{value:.8f}".rstrip("0").rstrip(".")
    if text == "0" and int(wei):
        return f"{int(wei)} wei"
    return f"{text} {symbol}"


class PaymentsReadout(Protocol):
    """What the Revenue panel and the Wallet screen show from the payments side (prices,
    prepaid balances, spend). Filled where the payments service exists; without it the
    screens say payments are not set up on this node."""

    def price_label(self, agent_id: str) -> str | None:
        """The agent's price for people (``None``: free)."""
        ...

    def wallet_summary(self, *, principal: Principal) -> dict[str, str] | None:
        """The caller's balance, deposits and spend per agent, as label -> value."""
        ...


@dataclass
class _Deployed:
    record: AgentSharesRecord
    contract: AgentSharesContract


class SharesService:
    def __init__(self, db: Database, chain: ChainService) -> None:
        self.db = db
        self.chain = chain
        # Set where payments run (prices, balances); None: not set up on this node.
        self.payments: PaymentsReadout | None = None

    def price_label(self, agent_id: str) -> str | None:
        """The agent's price (``None``: free, or no payments on this node)."""
        return self.payments.price_label(agent_id) if self.payments else None

    def payments_summary(self, *, principal: Principal) -> dict[str, str] | None:
        """The caller's prepaid balance and spend; ``None`` when payments are not set up."""
        if self.payments is None:
            return None
        return self.payments.wallet_summary(principal=principal)

    # ----- issuing ----------------------------------------------------------------------
    def issue(self, agent_id: str, request: IssueRequest, *, principal: Principal) -> SharesView:
        """Deploy the agent's shares with the whole supply to its token holder (once)."""
        agent = self.chain.require_owner(principal, agent_id)
        _validate(request)
        if agent.mint_state != "minted" or agent.token_id is None:
            raise ConflictError(
                f"agent '{agent.name}' is not minted; mint it before issuing shares"
            )
        if self._row(agent_id) is not None:
            raise ConflictError(f"agent '{agent.name}' already has shares; they are issued once")
        nft = self.chain.ensure_started()
        holder = self.chain.owners.holder(agent)
        w3 = self.chain.chain.web3
        call = shares_constructor(
            w3,
            name=request.name,
            symbol=request.symbol,
            supply=request.supply * 10**18,
            issuer=holder,
            agent_nft=nft.address,
            agent_token_id=int(agent.token_id),
            revenue_bps=request.revenue_bps,
            claimable_bps=request.claimable_bps,
        )
        # One key per agent: a retried or concurrent issue re-sends the same signed deployment.
        result = self.chain.node.sender.send(
            f"shares.issue:{agent_id}", "shares.issue", call, agent_id=agent_id
        )
        with reaching_node():
            receipt = w3.eth.get_transaction_receipt(result.tx_hash)
        record = AgentSharesRecord(
            agent_id=agent_id,
            chain_id=nft.deployment.chain_id,
            address=receipt["contractAddress"],
            name=request.name,
            symbol=request.symbol,
            supply=str(request.supply * 10**18),
            revenue_bps=request.revenue_bps,
            claimable_bps=request.claimable_bps,
            issuer=holder,
            tx_hash=result.tx_hash,
            block=result.block,
        )
        try:
            with self.db.session() as s:
                s.add(record)
        except IntegrityError:  # the same deployment, recorded by a concurrent request
            pass
        return self.get(agent_id)

    # ----- reads (public, like the chain) --------------------------------------------------
    def get(self, agent_id: str) -> SharesView:
        """The agent's shares with their live totals; 404 when none were issued."""
        deployed = self._deployed(agent_id)
        view = _view(deployed.record)
        with reaching_node():
            c = deployed.contract
            view.current_snapshot = c.current_snapshot()
            view.pending_revenue_wei = str(c.pending_revenue())
            view.total_received_wei = str(c.total_received())
            view.balance_wei = str(c.coin_balance())
        return view

    def find(self, agent_id: str) -> SharesView | None:
        """The recorded shares without reading the chain (``None``: not issued)."""
        row = self._row(agent_id)
        return _view(row) if row else None

    def share_contract_of(self, agent_id: str) -> tuple[str, int] | None:
        """Where the shares' part of the agent's income goes, and how much (basis points):
        what the payment contract's ``setRevenueShare`` takes. ``None``: no shares."""
        row = self._row(agent_id)
        return (row.address, row.revenue_bps) if row else None

    def revenue_bps_of(self, agent_id: str) -> int | None:
        """The revenue share fixed at issue (token metadata shows it)."""
        row = self._row(agent_id)
        return row.revenue_bps if row else None

    def holders(self, agent_id: str) -> list[Holder]:
        """Everyone holding shares now, largest first (from the contract's Transfer events)."""
        deployed = self._deployed(agent_id)
        supply = int(deployed.record.supply)
        with reaching_node():
            balances = deployed.contract.holders(from_block=deployed.record.block)
        rows = [
            Holder(
                address=address,
                balance=str(balance),
                balance_tokens=tokens(balance),
                percent=round(100 * balance / supply, 4) if supply else 0.0,
            )
            for address, balance in balances.items()
            if balance > 0
        ]
        return sorted(rows, key=lambda h: int(h.balance), reverse=True)

    def snapshots(self, agent_id: str) -> list[SnapshotView]:
        """Each snapshot: when, how much revenue it counted and the part holders claim."""
        row = self._row(agent_id)
        if row is None:
            return []
        contract = self._contract(row)
        w3 = contract.w3
        with reaching_node():
            found = contract.snapshots(from_block=row.block)
            views = []
            for s in found:
                stamp = w3.eth.get_block(s["block"])["timestamp"]
                views.append(
                    SnapshotView(
                        snapshot_id=s["snapshot_id"],
                        block=s["block"],
                        time=datetime.fromtimestamp(int(stamp), UTC),
                        revenue_wei=str(s["revenue"]),
                        claimable_wei=str(s["claimable"]),
                    )
                )
        return views

    def claimable(self, agent_id: str, account: str) -> list[Claimable]:
        """What ``account`` may claim from each snapshot (claimed ones included, as 0)."""
        deployed = self._deployed(agent_id)
        account = _address(account)
        c = deployed.contract
        out = []
        with reaching_node():
            for snapshot_id in range(1, c.current_snapshot() + 1):
                claimed = c.has_claimed(account, snapshot_id)
                amount = 0 if claimed else c.claimable(account, snapshot_id)
                if claimed or amount:
                    out.append(
                        Claimable(snapshot_id=snapshot_id, amount_wei=str(amount), claimed=claimed)
                    )
        return out

    def revenue(self, agent_id: str) -> RevenueView:
        """The agent's account balance (ERC-6551, read from the chain) and its shares."""
        status = self.chain.status(agent_id)
        balance = None
        if status.token_bound_account and status.reachable:
            with reaching_node():
                balance = str(self.chain.chain.web3.eth.get_balance(status.token_bound_account))
        shares = None
        income: list[SnapshotView] = []
        if self._row(agent_id) is not None and status.reachable:
            shares = self.get(agent_id)
            income = self.snapshots(agent_id)
        elif self._row(agent_id) is not None:
            shares = self.find(agent_id)
        return RevenueView(
            agent_id=agent_id,
            minted=status.minted,
            token_bound_account=status.token_bound_account,
            account_balance_wei=balance,
            shares=shares,
            income=income,
        )

    # ----- the caller's own -----------------------------------------------------------------
    def holdings(self, *, principal: Principal) -> list[Holding]:
        """The signed-in wallet's shares in every agent, with what it may claim."""
        if not principal.signed_in:
            return []
        assert principal.address is not None
        with self.db.session() as s:
            rows = list(s.scalars(select(AgentSharesRecord)))
        out = []
        for row in rows:
            contract = self._contract(row)
            with reaching_node():
                balance = contract.balance_of(principal.address)
            claims = [c for c in self.claimable(row.agent_id, principal.address) if not c.claimed]
            if not balance and not claims:
                continue
            supply = int(row.supply)
            try:
                agent_name = self.chain.agents.get_agent(row.agent_id).name
            except NotFoundError:
                agent_name = row.name
            out.append(
                Holding(
                    agent_id=row.agent_id,
                    agent_name=agent_name,
                    address=row.address,
                    symbol=row.symbol,
                    balance_tokens=tokens(balance),
                    percent=round(100 * balance / supply, 4) if supply else 0.0,
                    claimable_wei=str(sum(int(c.amount_wei) for c in claims)),
                    claimable=claims,
                )
            )
        return out

    def claim_request(self, agent_id: str, snapshot_id: int, *, principal: Principal) -> TxRequest:
        """The transaction that claims the caller's part of a snapshot, for their wallet to
        send; refused with a sentence first when it would revert."""
        if not principal.signed_in:
            raise ValidationError("sign in with the wallet that holds the shares to claim")
        deployed = self._deployed(agent_id)
        self._check_claim(deployed, snapshot_id, str(principal.address))
        return TxRequest(
            chain_id=deployed.record.chain_id,
            to=deployed.contract.address,
            data=deployed.contract.encode("claim", snapshot_id),
            description=f"Claim your {deployed.record.symbol} revenue from snapshot {snapshot_id}",
        )

    def snapshot_request(self, agent_id: str) -> TxRequest:
        """The transaction that takes a snapshot (anyone may send it); refused first when no
        revenue arrived since the last one."""
        deployed = self._deployed(agent_id)
        with reaching_node():
            if deployed.contract.pending_revenue() == 0:
                raise ConflictError(
                    "no revenue arrived since the last snapshot: there is nothing to snapshot"
                )
        return TxRequest(
            chain_id=deployed.record.chain_id,
            to=deployed.contract.address,
            data=deployed.contract.encode("snapshot"),
            description=f"Snapshot the revenue of {deployed.record.symbol}",
        )

    def snapshot(self, agent_id: str, *, principal: Principal) -> SnapshotView:
        """Take a snapshot now, paid by the platform's relayer (the agent's owner asks)."""
        self.chain.require_owner(principal, agent_id)
        deployed = self._deployed(agent_id)
        self.snapshot_request(agent_id)  # the clear refusal when there is nothing new
        number = deployed.contract.current_snapshot() + 1
        try:
            self.chain.node.sender.send(
                f"shares.snapshot:{agent_id}:{number}",
                "shares.snapshot",
                deployed.contract.snapshot_call(),
                agent_id=agent_id,
            )
        except TxReverted as exc:
            raise ConflictError(explain_revert(exc.reason)) from exc
        return next(s for s in self.snapshots(agent_id) if s.snapshot_id == number)

    # ----- internals --------------------------------------------------------------------
    def _check_claim(self, deployed: _Deployed, snapshot_id: int, account: str) -> None:
        """The contract's own refusals, read with view calls (a simulated call from a wallet
        without coin fails on some nodes for the gas money, not for the claim)."""
        c, account = deployed.contract, _address(account)
        with reaching_node():
            if not 1 <= snapshot_id <= c.current_snapshot():
                reason = f"UnknownSnapshot({snapshot_id})"
            elif c.has_claimed(account, snapshot_id):
                reason = f"AlreadyClaimed({snapshot_id}, {account})"
            elif c.claimable(account, snapshot_id) == 0:
                reason = f"NothingToClaim({snapshot_id}, {account})"
            else:
                return
        raise ConflictError(explain_revert(reason))

    def _row(self, agent_id: str) -> AgentSharesRecord | None:
        with self.db.session() as s:
            return s.get(AgentSharesRecord, agent_id)

    def _contract(self, row: AgentSharesRecord) -> AgentSharesContract:
        self.chain.ensure_started()
        return AgentSharesContract(self.chain.chain.web3, row.address)

    def _deployed(self, agent_id: str) -> _Deployed:
        row = self._row(agent_id)
        if row is None:
            raise NotFoundError("this agent has no shares; its owner may issue them")
        return _Deployed(row, self._contract(row))


def explain_revert(reason: str) -> str:
    """A contract refusal as a sentence for people."""
    name = reason.split("(", 1)[0]
    arg = reason[len(name) + 1 :].split(",", 1)[0].rstrip(")") if "(" in reason else ""
    sentences = {
        "NothingToClaim": f"Nothing to claim from snapshot {arg}: this wallet held no shares then.",
        "AlreadyClaimed": f"Snapshot {arg} is already claimed by this wallet.",
        "UnknownSnapshot": f"There is no snapshot {arg} yet.",
        "NoNewRevenue": "No revenue arrived since the last snapshot: there is nothing to snapshot.",
        "PaymentFailed": "The payout could not be sent to this wallet.",
    }
    return sentences.get(name, f"The shares contract refused: {reason}")


def _validate(request: IssueRequest) -> None:
    if not 1 <= request.supply <= MAX_SUPPLY // 10**18:
        raise ValidationError(f"supply must be between 1 and {MAX_SUPPLY // 10**18:,} tokens")
    if not 1 <= request.revenue_bps <= MAX_BPS:
        raise ValidationError("the revenue share is 1 to 10,000 basis points (0.01 % to 100 %)")
    if not 0 <= request.claimable_bps <= MAX_BPS:
        raise ValidationError("the claimable part is 0 to 10,000 basis points")
    if not 1 <= len(request.name.strip()) <= 100:
        raise ValidationError("a name of 1 to 100 characters")
    if not _SYMBOL.match(request.symbol):
        raise ValidationError("a symbol of 1 to 11 capital letters or digits")


def _address(value: str) -> str:
    if not Web3.is_address(value):
        raise ValidationError(f"{value!r} is not an address")
    return Web3.to_checksum_address(value)


def _view(row: AgentSharesRecord) -> SharesView:
    return SharesView(
        agent_id=row.agent_id,
        chain_id=row.chain_id,
        address=row.address,
        name=row.name,
        symbol=row.symbol,
        supply=row.supply,
        supply_tokens=tokens(int(row.supply)),
        revenue_bps=row.revenue_bps,
        claimable_bps=row.claimable_bps,
        issuer=row.issuer,
        tx_hash=row.tx_hash,
        block=row.block,
        issued_at=row.created_at if row.created_at.tzinfo else row.created_at.replace(tzinfo=UTC),
    )
