"""The Revenue panel's and the Wallet screen's handlers without a browser: what they show for
an agent without shares, with shares, and where payments are not set up."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

from core.principal import ANONYMOUS, Principal
from economy.shares_service import RevenueView, SharesView, SnapshotView
from ui.panels.revenue import handlers as revenue
from ui.wallet_screen import handlers as wallet

ISSUED = datetime(2026, 12, 1, tzinfo=UTC)


def _shares(**extra: Any) -> SharesView:
    values: dict[str, Any] = {
        "agent_id": "a" * 32,
        "chain_id": 31337,
        "address": "0x" + "12" * 20,
        "name": "Orla shares",
        "symbol": "ORLA",
        "supply": str(1000 * 10**18),
        "supply_tokens": "1000",
        "revenue_bps": 2500,
        "claimable_bps": 8000,
        "issuer": "0x" + "34" * 20,
        "tx_hash": "0x" + "00" * 32,
        "block": 5,
        "issued_at": ISSUED,
        "current_snapshot": 2,
        "pending_revenue_wei": str(5 * 10**17),
        "total_received_wei": str(3 * 10**18),
    }
    values.update(extra)
    return SharesView(**values)


def _view(shares: SharesView | None) -> RevenueView:
    income = [
        SnapshotView(
            snapshot_id=i,
            block=10 + i,
            time=ISSUED + timedelta(days=i),
            revenue_wei=str(wei),
            claimable_wei="0",
        )
        for i, wei in ((1, 10**18), (2, 2 * 10**18))
    ]
    return RevenueView(
        agent_id="a" * 32,
        minted=True,
        token_bound_account="0x" + "56" * 20,
        account_balance_wei=str(25 * 10**16),
        shares=shares,
        income=income if shares else [],
    )


def test_summary_shows_price_account_and_shares() -> None:
    html = revenue.render_summary(_view(_shares()), None)
    assert 'id="revenue-price"' in html and ">free<" in html
    assert ">0.25 ETH<" in html
    assert ">1000 ORLA (Orla shares)<" in html and ">25 % of income<" in html
    assert 'data-issued="true"' in html
    none = revenue.render_summary(_view(None), "0.001 ETH / 1k tokens")
    assert ">none issued<" in none and ">0.001 ETH / 1k tokens<" in none
    assert "Pick or save an agent" in revenue.render_summary(None, None)


def test_income_plot_is_the_running_total_from_the_issue_to_now() -> None:
    frame = revenue.income_frame(_view(_shares()))
    assert list(frame["ETH"]) == [0.0, 1.0, 3.0, 3.5]
    assert frame["time"].iloc[0] == ISSUED
    assert frame["time"].is_monotonic_increasing
    assert revenue.income_frame(_view(None)).empty


def test_wallet_screen_without_payments_and_signed_out() -> None:
    services = SimpleNamespace(
        shares=SimpleNamespace(
            payments_summary=lambda *, principal: None,
            holdings=lambda *, principal: [],
        )
    )
    assert wallet.payments(services, principal=ANONYMOUS) == {"payments": wallet.NO_PAYMENTS}
    assert wallet.holdings(services, principal=ANONYMOUS)["status"] == wallet.SIGN_IN
    me = Principal(address="0x" + "78" * 20, via="session")
    shown = wallet.refresh(services, principal=me)
    assert "you hold no revenue shares yet" in shown["status"]
    assert shown["payments"] == "Payments are not set up on this node."
