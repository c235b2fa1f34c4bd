"""The Payments contract on eth-tester (and once on anvil): deposits, withdrawals, settlement,
the fee and its rounding to the last wei, revenue shares, a malicious ERC-20 and a reentrant
receiver. Each payment test also checks that the coins the contract holds equal the balances
it owes, to the wei."""

from __future__ import annotations

import os

import pytest
from eth_account.signers.local import LocalAccount
from web3.logs import DISCARD

from chain.contract import ZERO_ADDRESS
from economy.contract import SettleLine
from economy.records import NATIVE
from tests.economy.conftest import Market, make_market


def batch() -> str:
    return "0x" + os.urandom(32).hex()


def settle(m: Market, lines: list[SettleLine], batch_id: str | None = None) -> dict:
    call = m.payments.settle_call(batch_id or batch(), sorted(lines))
    return m.send(m.deployer, call)


def deposit(m: Market, who: LocalAccount, wei: int) -> None:
    assert m.send(who, m.payments.contract.functions.deposit(), value=wei)["status"] == 1


def owed_native(m: Market, *accounts: str) -> int:
    return sum(m.payments.balance_of(a, NATIVE) for a in accounts)


def test_deposit_withdraw_and_refusals(market: Market) -> None:
    m, alice = market, market.wallet()
    deposit(m, alice, 10**18)
    assert m.payments.balance_of(alice.address, NATIVE) == 10**18
    before = m.w3.eth.get_balance(alice.address)
    receipt = m.send(alice, m.payments.contract.functions.withdraw(ZERO_ADDRESS, 4 * 10**17))
    assert receipt["status"] == 1
    paid_gas = receipt["gasUsed"] * receipt["effectiveGasPrice"]
    assert m.w3.eth.get_balance(alice.address) == before + 4 * 10**17 - paid_gas
    assert m.payments.balance_of(alice.address, NATIVE) == 6 * 10**17
    # More than is there, and zero, are refused and change nothing.
    too_much = m.send(alice, m.payments.contract.functions.withdraw(ZERO_ADDRESS, 10**18))
    assert too_much["status"] == 0
    assert m.send(alice, m.payments.contract.functions.deposit(), value=0)["status"] == 0
    assert m.payments.balance_of(alice.address, NATIVE) == 6 * 10**17
    assert m.w3.eth.get_balance(m.payments.address) >= 6 * 10**17


def test_erc20_deposit_and_withdraw(market: Market) -> None:
    m, bob = market, market.wallet()
    assert m.send(bob, m.stable.functions.faucet(bob.address, 5_000_000))["status"] == 1
    assert m.send(bob, m.stable.functions.approve(m.payments.address, 3_000_000))["status"] == 1
    call = m.payments.contract.functions.depositToken(m.stable.address, 3_000_000)
    assert m.send(bob, call)["status"] == 1
    assert m.payments.balance_of(bob.address, m.stable.address) == 3_000_000
    call = m.payments.contract.functions.withdraw(m.stable.address, 1_000_000)
    assert m.send(bob, call)["status"] == 1
    assert m.stable.functions.balanceOf(bob.address).call() == 3_000_000
    assert m.payments.balance_of(bob.address, m.stable.address) == 2_000_000


def test_settle_pays_the_agent_account_less_the_fee_rounded_down(market: Market) -> None:
    m = market
    owner, alice, bob = m.wallet(), m.wallet(), m.wallet()
    agent = m.mint(owner)
    account = m.nft.token_account(agent)
    deposit(m, alice, 10**18)
    deposit(m, bob, 10**18)
    fee_before = m.payments.balance_of(m.fee_recipient.address, NATIVE)
    # 1001 + 2002 = 3003 wei gross; 2.5 % is 75.075 wei: the fee is 75, the agent gets 2928.
    lines = [
        SettleLine(NATIVE, agent, alice.address, 1001),
        SettleLine(NATIVE, agent, bob.address, 2002),
    ]
    receipt = settle(m, lines)
    assert receipt["status"] == 1
    assert m.w3.eth.get_balance(account) == 2928
    assert m.payments.balance_of(m.fee_recipient.address, NATIVE) - fee_before == 75
    assert m.payments.balance_of(alice.address, NATIVE) == 10**18 - 1001
    assert m.payments.balance_of(bob.address, NATIVE) == 10**18 - 2002
    paid = m.payments.contract.events.AgentPaid().process_receipt(receipt, errors=DISCARD)
    assert [(e["args"]["gross"], e["args"]["fee"], e["args"]["toAccount"]) for e in paid] == [
        (3003, 75, 2928)
    ]


def test_a_batch_settles_once_and_only_the_settler_settles(market: Market) -> None:
    m = market
    alice, agent = m.wallet(), m.mint(m.wallet())
    deposit(m, alice, 10**15)
    batch_id = batch()
    line = [SettleLine(NATIVE, agent, alice.address, 500)]
    assert settle(m, line, batch_id)["status"] == 1
    assert m.payments.settled_at(batch_id) > 0
    assert settle(m, line, batch_id)["status"] == 0  # BatchAlreadySettled
    assert m.payments.balance_of(alice.address, NATIVE) == 10**15 - 500
    stranger = m.wallet()
    call = m.payments.settle_call(batch(), line)
    assert m.send(stranger, call)["status"] == 0  # NotSettler
    assert m.payments.balance_of(alice.address, NATIVE) == 10**15 - 500


def test_a_debit_never_goes_below_zero(market: Market) -> None:
    m = market
    alice, agent = m.wallet(), m.mint(m.wallet())
    deposit(m, alice, 700)
    receipt = settle(m, [SettleLine(NATIVE, agent, alice.address, 1000)])
    assert receipt["status"] == 1
    assert m.payments.balance_of(alice.address, NATIVE) == 0
    short = m.payments.contract.events.Shortfall().process_receipt(receipt, errors=DISCARD)
    assert [e["args"]["unpaid"] for e in short] == [300]
    paid = m.payments.contract.events.AgentPaid().process_receipt(receipt, errors=DISCARD)
    assert [e["args"]["gross"] for e in paid] == [700]


def test_revenue_share_is_set_once_by_the_holder_and_split_to_the_wei(market: Market) -> None:
    m = market
    owner, alice = m.wallet(), m.wallet()
    agent = m.mint(owner)
    receiver = m.deploy("TestShareReceiver")
    set_share = m.payments.contract.functions.setRevenueShare(agent, receiver.address, 3333)
    assert m.send(alice, set_share)["status"] == 0  # not the holder
    assert m.send(owner, set_share)["status"] == 1
    again = m.payments.contract.functions.setRevenueShare(agent, alice.address, 100)
    assert m.send(owner, again)["status"] == 0  # immutable once set
    assert m.payments.revenue_share(agent) == (receiver.address, 3333)
    deposit(m, alice, 10**18)
    # gross 999_999: fee 24_999 (2.5 %, rounded down), net 975_000; shares 3333 bps of it is
    # 324_967.5 -> 324_967; the account gets the remaining 650_033.
    receipt = settle(m, [SettleLine(NATIVE, agent, alice.address, 999_999)])
    assert receipt["status"] == 1
    assert receiver.functions.received().call() == 324_967
    assert m.w3.eth.get_balance(m.nft.token_account(agent)) == 650_033
    assert 24_999 + 324_967 + 650_033 == 999_999
    # ERC-20 income is not split: the whole net goes to the account.
    assert m.send(alice, m.stable.functions.faucet(alice.address, 10_000))["status"] == 1
    assert m.send(alice, m.stable.functions.approve(m.payments.address, 10_000))["status"] == 1
    dep = m.payments.contract.functions.depositToken(m.stable.address, 10_000)
    assert m.send(alice, dep)["status"] == 1
    assert settle(m, [SettleLine(m.stable.address, agent, alice.address, 4_000)])["status"] == 1
    assert m.stable.functions.balanceOf(m.nft.token_account(agent)).call() == 3_900


def test_a_reentrant_receiver_gets_nothing_twice_and_cannot_block_a_batch(market: Market) -> None:
    m = market
    owner, alice = m.wallet(), m.wallet()
    agent = m.mint(owner)
    evil = m.deploy("ReentrantReceiver", m.payments.address)
    # As a depositor: its withdrawal reenters from receive(); the guard refuses, all reverts.
    assert m.send(alice, evil.functions.depositFor(), value=10**6)["status"] == 1
    assert m.send(alice, evil.functions.withdrawAll(10**6))["status"] == 0
    assert m.payments.balance_of(evil.address, NATIVE) == 10**6
    # As the share contract: its reentering receive fails, its part is kept for it and the
    # batch goes through; nothing left the contract twice.
    assert (
        m.send(owner, m.payments.contract.functions.setRevenueShare(agent, evil.address, 5000))[
            "status"
        ]
        == 1
    )
    deposit(m, alice, 10**6)
    held = m.w3.eth.get_balance(m.payments.address)
    receipt = settle(m, [SettleLine(NATIVE, agent, alice.address, 40_000)])
    assert receipt["status"] == 1
    deferred = m.payments.contract.events.PaymentDeferred().process_receipt(receipt, errors=DISCARD)
    assert [(e["args"]["to"], e["args"]["amount"]) for e in deferred] == [(evil.address, 19_500)]
    assert m.payments.balance_of(evil.address, NATIVE) == 10**6 + 19_500
    assert evil.functions.reentered().call() is False
    account = m.nft.token_account(agent)
    assert m.w3.eth.get_balance(account) == 19_500
    # What left the contract is exactly the account's part.
    assert m.w3.eth.get_balance(m.payments.address) == held - 19_500


def test_a_malicious_erc20_cannot_reenter_or_fake_a_deposit(market: Market) -> None:
    m = market
    owner, mallory = m.wallet(), m.wallet()
    agent = m.mint(owner)
    token = m.deploy("MaliciousToken")
    assert m.send(mallory, token.functions.mint(mallory.address, 10**9))["status"] == 1
    assert m.send(mallory, token.functions.approve(m.payments.address, 10**9))["status"] == 1
    dep = m.payments.contract.functions.depositToken(token.address, 1000)
    # Reentering deposit from transferFrom: refused by the guard; nothing credited.
    assert m.send(mallory, token.functions.arm(m.payments.address, True, False))["status"] == 1
    assert m.send(mallory, dep)["status"] == 0
    # Returning false instead of moving tokens: SafeERC20 refuses it.
    assert m.send(mallory, token.functions.arm(m.payments.address, False, True))["status"] == 1
    assert m.send(mallory, dep)["status"] == 0
    assert m.payments.balance_of(mallory.address, token.address) == 0
    # An honest deposit, then a token that refuses to pay the agent out: the batch settles and
    # the agent's account is credited here, to withdraw later.
    assert m.send(mallory, token.functions.arm(m.payments.address, False, False))["status"] == 1
    assert m.send(mallory, dep)["status"] == 1
    assert m.send(mallory, token.functions.arm(m.payments.address, False, True))["status"] == 1
    receipt = settle(m, [SettleLine(token.address, agent, mallory.address, 1000)])
    assert receipt["status"] == 1
    account = m.nft.token_account(agent)
    assert m.payments.balance_of(account, token.address) == 975
    assert m.payments.balance_of(mallory.address, token.address) == 0
    # Withdrawing through a transfer that reenters is refused as well; the balance stays.
    assert m.send(mallory, token.functions.arm(m.payments.address, False, False))["status"] == 1
    assert m.send(mallory, dep)["status"] == 1
    assert m.send(mallory, token.functions.arm(m.payments.address, True, False))["status"] == 1
    out = m.payments.contract.functions.withdraw(token.address, 500)
    assert m.send(mallory, out)["status"] == 0
    assert m.payments.balance_of(mallory.address, token.address) == 1000


@pytest.mark.parametrize("fee_bps", [0])
def test_settle_on_anvil_without_a_fee(anvil_node, fee_bps: int) -> None:  # type: ignore[no-untyped-def]
    m = make_market(anvil_node, fee_bps=fee_bps)
    owner, alice, bob = m.wallet(), m.wallet(), m.wallet()
    agent, other = m.mint(owner), m.mint(owner)
    deposit(m, alice, 10**18)
    deposit(m, bob, 10**18)
    lines = [
        SettleLine(NATIVE, agent, alice.address, 3),
        SettleLine(NATIVE, agent, bob.address, 5),
        SettleLine(NATIVE, other, alice.address, 7),
    ]
    batch_id = batch()
    assert settle(m, lines, batch_id)["status"] == 1
    assert settle(m, lines, batch_id)["status"] == 0
    assert m.w3.eth.get_balance(m.nft.token_account(agent)) == 8
    assert m.w3.eth.get_balance(m.nft.token_account(other)) == 7
    assert owed_native(m, alice.address, bob.address) == 2 * 10**18 - 15
    assert m.payments.balance_of(m.fee_recipient.address, NATIVE) == 0
