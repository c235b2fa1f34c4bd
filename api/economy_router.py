"""The agent economy over REST: prices, the caller's balance and spend, an agent's income.

Depositing is a wallet transaction, not a route: the caller's wallet calls the Payments
contract itself (``deposit()`` with value for the native coin; ``approve`` then
``depositToken(token, amount)`` for an ERC-20; ``withdraw(token, amount)`` to take back what
is unspent). ``GET /api/economy`` names the contract; on development chains
``POST /api/economy/test-funds`` gives the signed-in wallet coins and test dollars to deposit.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from api.deps import AgentOwner, Caller, services
from api.errors import GUARD_ERRORS, OWNER_ERRORS, error_responses
from container import Services
from core.errors import AuthError
from economy.prices import Price, PriceView
from economy.records import NATIVE
from economy.shares_service import TxRequest
from economy.views import BalanceView, IncomeView, SpendRow

router = APIRouter(prefix="/api", tags=["economy"], responses=error_responses(*GUARD_ERRORS, 404))
Svc = Annotated[Services, Depends(services)]


class EconomyInfo(BaseModel):
    contract: str
    chain_id: int
    settler: str
    fee_bps: int
    fee_recipient: str
    stablecoin: str | None  # the test stablecoin (development chains only)


class TestFunds(BaseModel):
    native_wei: int = Field(default=10**18, ge=0, le=10**21)
    stable_units: int = Field(default=100_000_000, ge=0, le=10**15)  # 100 test dollars


@router.get("/economy", response_model=EconomyInfo, responses=error_responses(503))
def economy_info(svc: Svc) -> EconomyInfo:
    """Where the Payments contract is, and its fee (set at deployment)."""
    d = svc.economy.payments().deployment
    return EconomyInfo(
        contract=d.address,
        chain_id=d.chain_id,
        settler=d.settler,
        fee_bps=d.fee_bps,
        fee_recipient=d.fee_recipient,
        stablecoin=d.stablecoin,
    )


@router.get("/agents/{agent_id}/price", response_model=PriceView)
def get_price(agent_id: str, svc: Svc) -> PriceView:
    """What using the agent through the API costs others (all zero: free)."""
    return svc.economy.get_price(agent_id)


@router.put(
    "/agents/{agent_id}/price",
    response_model=PriceView,
    responses=error_responses(*OWNER_ERRORS),
)
def set_price(agent_id: str, body: Price, svc: Svc, principal: AgentOwner) -> PriceView:
    """Price the agent (its owner; it must be minted). New requests pay the new price."""
    return svc.economy.set_price(agent_id, body, principal=principal)


@router.post(
    "/agents/{agent_id}/shares/route-income",
    response_model=TxRequest,
    responses=error_responses(*OWNER_ERRORS, 409),
)
def route_income(agent_id: str, svc: Svc, principal: AgentOwner) -> TxRequest:
    """The transaction that sends the shares' part of the agent's income to its share
    contract, for the holder's wallet to send (once; 409 when already routed)."""
    share = svc.shares.share_contract_of(agent_id)
    return svc.economy.revenue_share_request(agent_id, share, principal=principal)


@router.get("/agents/{agent_id}/income", response_model=IncomeView, responses=error_responses(503))
def income(agent_id: str, svc: Svc) -> IncomeView:
    """What callers were charged for the agent, per currency, and where it is paid."""
    return svc.economy.income(agent_id)


@router.get("/economy/balance", response_model=BalanceView, responses=error_responses(401, 503))
def balance(
    svc: Svc,
    principal: Caller,
    currency: Annotated[str, Query(description="'native' or an ERC-20 address")] = NATIVE,
) -> BalanceView:
    """The caller's prepaid balance: on chain, reserved by replies in flight, unsettled."""
    return svc.economy.balance(principal=principal, currency=currency)


@router.get("/economy/spend", response_model=list[SpendRow], responses=error_responses(401))
def spend(svc: Svc, principal: Caller) -> list[SpendRow]:
    """What the caller's wallet was charged, per agent and currency."""
    return svc.economy.spend(principal=principal)


@router.post("/economy/test-funds", responses=error_responses(401, 503))
def test_funds(svc: Svc, principal: Caller, body: TestFunds | None = None) -> dict[str, Any]:
    """Development chains only: give the signed-in wallet coins and test dollars."""
    if principal.address is None:
        raise AuthError("sign in to fund your wallet")
    body = body or TestFunds()
    return svc.economy.fund_test_wallet(
        principal.address, native_wei=body.native_wei, stable_units=body.stable_units
    )
