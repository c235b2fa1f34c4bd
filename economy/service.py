"""The agent economy's service: prices, the 402 gate, balances, spend, income, settlement.

The API (``api/economy_router.py``, the ``/v1`` routes) and the UI call this; the parts are
``prices`` (what a request costs), ``ledger`` (who can pay now), ``settlement`` (batches on
chain) and ``contract`` (the Payments contract). Prices and income are public, as on chain;
a wallet's balance and spend are its own.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from eth_utils import to_checksum_address
from pydantic import ValidationError as PydanticValidationError
from sqlalchemy import select

from chain.contract import token_id_of
from chain.transactions import TxSender, reaching_node
from core.db import Database
from core.errors import (
    AuthError,
    ChainError,
    ConflictError,
    PaymentRequiredError,
    ValidationError,
    describe_validation_error,
)
from core.files import atomic_write
from core.principal import Principal
from core.settings import Settings
from economy.contract import Payments, PaymentsDeployment, deploy_payments, read_payments
from economy.ledger import Ledger, Reservation, Shortage
from economy.prices import FREE, Price, PriceView
from economy.records import NATIVE, AgentPriceRecord, ChargeRecord, utcnow
from economy.settlement import Settlement
from economy.shares_service import TxRequest
from economy.views import BalanceView, IncomeView, SpendRow, sum_rows

if TYPE_CHECKING:
    from agents.service import AgentService
    from chain.service import ChainService
    from core.jobs import JobService

log = logging.getLogger(__name__)
DEFAULT_CONTEXT = 4096  # the worst case's prompt when the model cannot say


class EconomyService:
    def __init__(
        self,
        settings: Settings,
        db: Database,
        chain: ChainService,
        agents: AgentService,
        jobs: JobService,
        context_window: Callable[[str], int] | None = None,
    ) -> None:
        """``context_window(agent_id)``: tokens the agent's model attends to (the worst
        case of a prompt)."""
        self.settings = settings
        self.db = db
        self.chain = chain
        self.agents = agents
        self.jobs = jobs
        self._context_window = context_window
        self.ledger = Ledger(db, self._read_balance, settings.chain.payments_balance_cache_s)
        self.settlement = Settlement(
            db, jobs, self.contracts, self.ledger, settings.chain.payments_batch_size
        )
        self._prices: dict[str, Price] | None = None
        self._payments: Payments | None = None
        self._deploy_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ----- the contract -----------------------------------------------------------------------
    def payments(self) -> Payments:
        """The Payments client; deployed on first use on a development chain."""
        if self._payments is not None:
            return self._payments
        with self._deploy_lock:
            if self._payments is None:
                nft = self.chain.ensure_started()
                with reaching_node():
                    self._payments = Payments(nft.w3, self._deployment(nft))
        return self._payments

    def contracts(self) -> tuple[Payments, TxSender]:
        """For the settlement job: the contract and the settler's sender, once the node is up."""
        self.chain.node.wait_until_up()
        return self.payments(), self.chain.node.sender

    def _deployment(self, nft: Any) -> PaymentsDeployment:
        w3 = nft.w3
        if self.settings.chain.payments_contract:
            return read_payments(w3, self.settings.chain.payments_contract)
        path = self.settings.chain_dir / "payments.json"
        if path.is_file():
            saved = PaymentsDeployment.from_json(path.read_text())
            if (
                saved.chain_id == int(w3.eth.chain_id)
                and saved.agents == to_checksum_address(nft.address)
                and w3.eth.get_code(saved.address)
            ):
                return saved
        if not self.chain.chain.is_dev:
            raise ChainError(
                "no Payments contract is configured: set ANIMA_PAYMENTS_CONTRACT (deploy it with "
                "the settler, the minter, as `settler`)"
            )
        minter = self.chain.node.sender.account
        deployment, _gas = deploy_payments(
            w3,
            minter,
            agents=nft.address,
            settler=minter.address,
            fee_recipient=self.settings.chain.payments_fee_recipient,
            fee_bps=self.settings.chain.payments_fee_bps,
            stablecoin=True,
        )
        self.settings.chain_dir.mkdir(parents=True, exist_ok=True)
        atomic_write(path, deployment.to_json().encode())
        log.info("deployed Payments at %s", deployment.address)
        return deployment

    def _read_balance(self, payer: str, currency: str) -> int:
        with reaching_node():
            return self.payments().balance_of(payer, currency)

    # ----- prices -----------------------------------------------------------------------------
    def price(self, agent_id: str) -> Price:
        """The agent's price (free when none is set); read from memory."""
        prices = self._prices
        if prices is None:
            with self.db.session() as s:
                rows = s.scalars(select(AgentPriceRecord)).all()
                prices = {r.agent_id: price_of(r) for r in rows}
            self._prices = prices
        return prices.get(agent_id, FREE)

    def get_price(self, agent_id: str) -> PriceView:
        self.agents.get_agent(agent_id)  # 404 for an unknown agent
        return PriceView(agent_id=agent_id, **self.price(agent_id).model_dump())

    def set_price(self, agent_id: str, price: Price, *, principal: Principal) -> PriceView:
        """Set what others pay to use the agent through the API (its owner only; all zero:
        free). Requests already running keep the price they reserved at."""
        agent = self.chain.require_owner(principal, agent_id)
        if not price.free and agent.mint_state != "minted":
            raise ValidationError(
                "mint the agent first: its income is paid to its token's ERC-6551 account"
            )
        with self.db.session() as s:
            row = s.get(AgentPriceRecord, agent_id)
            if row is None:
                row = AgentPriceRecord(agent_id=agent_id)
                s.add(row)
            row.currency = price.currency
            row.prompt_per_1k = str(price.prompt_per_1k)
            row.completion_per_1k = str(price.completion_per_1k)
            row.speech_per_minute = str(price.speech_per_minute)
            row.updated_at = utcnow()
        self.price(agent_id)  # loaded before the change is put in
        assert self._prices is not None
        self._prices[agent_id] = Price(**price.model_dump())
        return PriceView(agent_id=agent_id, **price.model_dump())

    # ----- the gate ---------------------------------------------------------------------------
    def hold(
        self, agent_id: str, *, principal: Principal, max_new_tokens: int | None, choices: int = 1
    ) -> list[Reservation]:
        """Reserve the worst case of ``choices`` replies before anything is generated; none for
        a free agent or its owner. 402 (nothing held) when the wallet has too little."""
        price = self.price(agent_id)
        if price.free:
            return []
        agent = self.agents.get_agent(agent_id)
        if principal.is_system or principal.is_address(agent.owner_address):
            return []  # the owner's own use is never charged
        if principal.address is None:
            raise PaymentRequiredError(
                f"agent {agent_id!r} is priced: call it with an API key of a wallet that has "
                "a prepaid balance",
                details={"price": price.model_dump(mode="json")},
            )
        completion = max_new_tokens or agent.generation.max_new_tokens
        prompt = max(self._window(agent_id) - completion, 0)
        worst = price.cost(prompt_tokens=prompt, completion_tokens=completion)
        held: list[Reservation] = []
        for _ in range(choices):
            r = Reservation(
                payer=principal.address.lower(),
                currency=price.currency,
                amount=worst,
                price=price,
                agent_id=agent_id,
                token_id=token_id_of(agent_id),
                key_id=principal.key_id,
            )
            short = self.ledger.reserve(r)
            if short is not None:
                for h in held:
                    self.ledger.release(h)
                raise self._refusal(agent_id, price, worst * choices, short)
            held.append(r)
        return held

    def require_unpriced(self, agent_id: str, *, principal: Principal) -> None:
        """402 when ``principal`` would use a priced agent outside the paid ``/v1`` routes."""
        price = self.price(agent_id)
        if price.free or principal.is_system:
            return
        if principal.is_address(self.agents.get_agent(agent_id).owner_address):
            return
        raise PaymentRequiredError(
            f"agent {agent_id!r} is priced: call it through /v1/chat/completions, which is paid "
            "from your wallet's prepaid balance",
            details={"price": price.model_dump(mode="json")},
        )

    def hold_speech(
        self, agent_id: str, *, principal: Principal, seconds: float
    ) -> list[Reservation]:
        """Reserve what ``seconds`` of speech cost (``charge`` then bills what was made)."""
        price = self.price(agent_id)
        if price.free or not price.speech_per_minute:
            return []
        agent = self.agents.get_agent(agent_id)
        if principal.is_system or principal.is_address(agent.owner_address):
            return []
        if principal.address is None:
            raise PaymentRequiredError(
                f"agent {agent_id!r} is priced: use an API key of a funded wallet",
                details={"price": price.model_dump(mode="json")},
            )
        r = Reservation(
            payer=principal.address.lower(),
            currency=price.currency,
            amount=price.cost(audio_s=seconds),
            price=price,
            agent_id=agent_id,
            token_id=token_id_of(agent_id),
            key_id=principal.key_id,
        )
        short = self.ledger.reserve(r)
        if short is not None:
            raise self._refusal(agent_id, price, r.amount, short)
        return [r]

    def _refusal(self, agent_id: str, price: Price, needed: int, short: Shortage) -> Exception:
        unit = "wei" if price.currency == NATIVE else f"units of {price.currency}"
        return PaymentRequiredError(
            f"insufficient prepaid balance for agent {agent_id!r}: this request may cost up to "
            f"{needed} {unit} and {short.available} is available (balance {short.balance}, "
            f"{short.reserved} reserved by replies in flight, {short.unsettled} charged and not "
            "settled yet); deposit into the Payments contract "
            f"{self.payments().address} and retry",
            details={
                "balance": str(short.balance),
                "available": str(short.available),
                "reserved": str(short.reserved),
                "unsettled": str(short.unsettled),
                "required": str(needed),
                "price": price.model_dump(mode="json"),
            },
        )

    def _window(self, agent_id: str) -> int:
        if self._context_window is not None:
            try:
                return int(self._context_window(agent_id))
            except Exception as exc:  # the model cannot say: assume a common window
                log.debug("context window of %s unknown: %s", agent_id, exc)
        return self.settings.llm.context_window or DEFAULT_CONTEXT

    def release(self, held: list[Reservation]) -> None:
        for r in held:
            self.ledger.release(r)

    def charge(
        self,
        r: Reservation,
        request_id: str,
        *,
        prompt_tokens: int = 0,
        completion_tokens: int = 0,
        audio_seconds: float = 0.0,
    ) -> int:
        """Turn the reservation into the charge of what the request used, at the reserved
        price (a later price change applies to new requests only). Returns the amount."""
        amount = r.price.cost(prompt_tokens, completion_tokens, audio_seconds)
        if amount <= 0:
            self.ledger.release(r)
            return 0
        row = ChargeRecord(
            id=request_id,
            payer=r.payer,
            key_id=r.key_id,
            agent_id=r.agent_id,
            token_id=str(r.token_id),
            currency=r.currency,
            prompt_per_1k=str(r.price.prompt_per_1k),
            completion_per_1k=str(r.price.completion_per_1k),
            speech_per_minute=str(r.price.speech_per_minute),
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            audio_seconds=audio_seconds,
            amount=str(amount),
        )
        self.ledger.charge(r, row)
        self._start_settling()
        return amount

    def attach(self, r: Reservation, reply: Any, request_id: str) -> None:
        """Charge ``reply`` (a ``ReplyStream``) when it ends, from the same usage its usage
        record gets; the reservation holds until then."""

        def finished(stream: Any, _outcome: str) -> None:
            usage = stream.usage
            self.charge(
                r,
                request_id,
                prompt_tokens=usage.prompt_tokens,
                completion_tokens=usage.completion_tokens,
            )

        reply.on_finish.append(finished)

    # ----- reads ------------------------------------------------------------------------------
    def balance(self, *, principal: Principal, currency: str = NATIVE) -> BalanceView:
        """The caller's wallet: on chain (read now), reserved, unsettled, available."""
        if principal.address is None:
            raise AuthError("sign in (or use an API key) to see your balance")
        try:
            currency = Price(currency=currency).currency
        except PydanticValidationError as exc:
            raise ValidationError(describe_validation_error(exc)) from exc
        state = self.ledger.state(principal.address, currency, fresh=True)
        return BalanceView(
            address=principal.address,
            currency=currency,
            balance=str(state.balance),
            reserved=str(state.reserved),
            unsettled=str(state.unsettled),
            available=str(state.available),
            contract=self.payments().address,
        )

    def spend(self, *, principal: Principal) -> list[SpendRow]:
        """What the caller's wallet was charged, per agent and currency."""
        if principal.address is None:
            raise AuthError("sign in (or use an API key) to see your spending")
        return sum_rows(ChargeRecord.payer == principal.address.lower(), self.db)

    def income(self, agent_id: str) -> IncomeView:
        """What callers were charged for the agent and where it is paid (public, as on chain)."""
        self.agents.get_agent(agent_id)
        payments = self.payments()
        token_id = token_id_of(agent_id)
        with reaching_node():
            shares, bps = payments.revenue_share(token_id)
        return IncomeView(
            agent_id=agent_id,
            token_id=str(token_id),
            account=self.chain.ensure_started().token_account(token_id),
            price=self.get_price(agent_id),
            rows=sum_rows(ChargeRecord.agent_id == agent_id, self.db),
            fee_bps=payments.deployment.fee_bps,
            revenue_share={"shares": shares, "bps": bps} if int(shares, 16) else None,
        )

    def revenue_share_request(
        self, agent_id: str, share: tuple[str, int] | None, *, principal: Principal
    ) -> TxRequest:
        """The ``setRevenueShare`` transaction for the agent's holder to send (the contract
        takes it only from the NFT's holder, once): ``share`` is the shares contract and its
        basis points, as issued."""
        self.chain.require_owner(principal, agent_id)
        if share is None:
            raise ValidationError("issue the agent's revenue shares first")
        payments = self.payments()
        token_id = token_id_of(agent_id)
        with reaching_node():
            routed, bps = payments.revenue_share(token_id)
        if int(routed, 16):
            raise ConflictError(
                f"this agent's income already goes to {routed} ({bps / 100:g} %); it cannot change"
            )
        address, bps = share
        call = payments.contract.functions.setRevenueShare(token_id, address, bps)
        return TxRequest(
            chain_id=payments.w3.eth.chain_id,
            to=payments.address,
            data=call._encode_transaction_data(),
            description=f"send {bps / 100:g} % of this agent's income to its shares",
        )

    def owners(self) -> dict[str, str | None]:
        """Every agent's owner address (for the audit: their own use is free)."""
        return {a.id: a.owner_address for a in self.agents.list_agents()}

    # ----- development chains -----------------------------------------------------------------
    def fund_test_wallet(self, address: str, *, native_wei: int, stable_units: int) -> dict:
        """Give a wallet coins and test dollars (development chains only; no deposit)."""
        if not self.chain.chain.is_dev:
            raise ValidationError("test wallets are funded on development chains only")
        payments = self.payments()
        address = to_checksum_address(address)
        with reaching_node():
            if native_wei:
                self.chain.chain.fund(address, native_wei)
            coin = payments.deployment.stablecoin
            if coin and stable_units:
                from chain.contract import load_artifact

                token = payments.w3.eth.contract(
                    address=coin, abi=load_artifact("TestStablecoin")["abi"]
                )
                self.chain.node.sender.send(
                    f"economy.faucet:{address}:{utcnow().timestamp()}",
                    "economy.faucet",
                    token.functions.faucet(address, stable_units),
                )
        return {"address": address, "stablecoin": payments.deployment.stablecoin}

    # ----- settlement -------------------------------------------------------------------------
    def settle_now(self) -> list[str]:
        """Batch every unsettled charge now and start their jobs; the batch ids."""
        return self.settlement.tick()

    def start(self) -> None:
        """Settle every ``ANIMA_PAYMENTS_SETTLE_INTERVAL_S`` (batches left open by a crash
        first)."""
        self._start_settling()

    def _start_settling(self) -> None:
        if self._thread is None:
            with self._deploy_lock:
                if self._thread is None and not self._stop.is_set():
                    self._thread = threading.Thread(
                        target=self._loop, name="economy-settlement", daemon=True
                    )
                    self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.settings.chain.payments_settle_interval_s):
            try:
                self.settlement.tick()
            except Exception as exc:  # the next round tries again
                log.warning("settlement round failed: %s", exc)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)


def price_of(row: AgentPriceRecord) -> Price:
    return Price(
        currency=row.currency,
        prompt_per_1k=int(row.prompt_per_1k),
        completion_per_1k=int(row.completion_per_1k),
        speech_per_minute=int(row.speech_per_minute),
    )
