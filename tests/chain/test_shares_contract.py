"""AgentShares (ERC-7641) on eth-tester and anvil: snapshots, claims, burns, reentrancy and
rounding to the last wei.

Every transaction is signed by a plain key and sent straight to the contract: these are the
rules the contract enforces for anyone, whatever the app does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from eth_account.signers.local import LocalAccount
from web3.logs import DISCARD

from chain.contract import load_artifact
from chain.deploy import deploy_contract
from economy.shares_contract import AgentSharesContract
from tests.chain.conftest import Stack
from tests.chain.helpers import new_wallet
from tests.chain.test_contract import mint, reverts_with, send


@dataclass
class Issued:
    shares: AgentSharesContract
    issuer: LocalAccount
    token_id: int


def issue(
    stack: Stack, supply: int, claimable_bps: int = 10_000, revenue_bps: int = 2_000
) -> Issued:
    issuer = new_wallet()
    _, token_id, _ = mint(stack, issuer.address)
    stack.chain.fund(issuer.address, 10**19)
    address, _, _ = deploy_contract(
        stack.w3, issuer, "AgentShares",
        "Orla shares", "ORLA", supply, issuer.address, stack.nft.address, token_id,
        revenue_bps, claimable_bps,
    )  # fmt: skip
    return Issued(AgentSharesContract(stack.w3, address), issuer, token_id)


def pay_in(stack: Stack, shares: AgentSharesContract, wei: int) -> None:
    """Income arriving as a plain transfer (what the payment contract sends)."""
    payer = new_wallet()
    stack.chain.fund(payer.address, wei + 10**18)
    w3 = stack.w3
    tx = {
        "to": shares.address,
        "value": wei,
        "gas": 100_000,
        "nonce": w3.eth.get_transaction_count(payer.address),
        "chainId": w3.eth.chain_id,
        "maxFeePerGas": 2 * w3.eth.get_block("latest")["baseFeePerGas"] + 10**9,
        "maxPriorityFeePerGas": 10**9,
    }
    raw = payer.sign_transaction(tx).raw_transaction
    assert w3.eth.wait_for_transaction_receipt(w3.eth.send_raw_transaction(raw))["status"] == 1


def paid(shares: AgentSharesContract, receipt: Any, event: str) -> int:
    """The amount a Claimed / Redeemed event in ``receipt`` says was paid."""
    logs = getattr(shares.contract.events, event)().process_receipt(receipt, errors=DISCARD)
    assert len(logs) == 1
    return int(logs[0]["args"]["amount" if event == "Claimed" else "paid"])


def test_two_holders_claim_their_share_of_each_snapshot(tester_stack: Stack) -> None:
    issued = issue(tester_stack, supply=1_000)
    shares, alice, bob = issued.shares, issued.issuer, new_wallet()
    send(tester_stack, alice, shares.transfer_call(bob.address, 250))
    pay_in(tester_stack, shares, 4_000)
    assert shares.pending_revenue() == 4_000
    send(tester_stack, bob, shares.snapshot_call())  # anyone may take a snapshot
    assert shares.current_snapshot() == 1
    assert shares.revenue_at(1) == (4_000, 4_000)

    # Bob sells 250 more after the snapshot: snapshot 1 still counts his old balance.
    send(tester_stack, alice, shares.transfer_call(bob.address, 250))
    assert shares.claimable(alice.address, 1) == 3_000
    assert shares.claimable(bob.address, 1) == 1_000
    pay_in(tester_stack, shares, 1_000)
    send(tester_stack, alice, shares.snapshot_call())
    assert shares.claimable(alice.address, 2) == 500
    assert shares.claimable(bob.address, 2) == 500

    claimed = 0
    for account, snapshot_id, expected in ((alice, 1, 3_000), (bob, 1, 1_000), (bob, 2, 500)):
        receipt = send(tester_stack, account, shares.claim_call(snapshot_id))
        assert paid(shares, receipt, "Claimed") == expected
        claimed += expected
        assert shares.claimable(account.address, snapshot_id) == 0
        assert shares.has_claimed(account.address, snapshot_id)
    assert shares.coin_balance() == 5_000 - claimed == 500  # Alice's part of snapshot 2


def test_claims_are_refused_with_a_reason(tester_stack: Stack) -> None:
    issued = issue(tester_stack, supply=10)
    shares, alice, stranger = issued.shares, issued.issuer, new_wallet()
    assert reverts_with(shares.snapshot_call(), alice.address) == "NoNewRevenue()"
    pay_in(tester_stack, shares, 100)
    send(tester_stack, alice, shares.snapshot_call())
    assert reverts_with(shares.claim_call(2), alice.address) == "UnknownSnapshot(2)"
    assert reverts_with(shares.claim_call(1), stranger.address).startswith("NothingToClaim(1, ")
    send(tester_stack, alice, shares.claim_call(1))
    assert reverts_with(shares.claim_call(1), alice.address).startswith("AlreadyClaimed(1, ")
    assert shares.coin_balance() == 0


def test_rounding_never_pays_more_than_received_to_the_last_wei(tester_stack: Stack) -> None:
    issued = issue(tester_stack, supply=3, claimable_bps=3_333)
    shares, alice = issued.shares, issued.issuer
    others = [new_wallet(), new_wallet()]
    for other in others:
        send(tester_stack, alice, shares.transfer_call(other.address, 1))
    holders = [alice, *others]
    received, out = 0, 0
    for wei in (1_001, 7, 2):
        pay_in(tester_stack, shares, wei)
        received += wei
        send(tester_stack, alice, shares.snapshot_call())
        snapshot_id = shares.current_snapshot()
        claimable = shares.revenue_at(snapshot_id)[1]
        assert claimable == wei * 3_333 // 10_000
        for holder in holders:
            if shares.claimable(holder.address, snapshot_id):
                receipt = send(tester_stack, holder, shares.claim_call(snapshot_id))
                out += paid(shares, receipt, "Claimed")
    # Every holder burns everything: the redeemable pool goes out, floors and all.
    for holder in holders:
        receipt = send(tester_stack, holder, shares.burn_call(shares.balance_of(holder.address)))
        out += paid(shares, receipt, "Redeemed")
    assert shares.total_supply() == 0
    assert out <= received
    assert shares.coin_balance() == received - out  # nothing created, nothing lost
    assert received - out <= 3 * len(holders) + 3  # only the floors' dust is left


def test_burn_redeems_the_snapshotted_and_the_new_redeemable_part(tester_stack: Stack) -> None:
    issued = issue(tester_stack, supply=100, claimable_bps=6_000)
    shares, alice, bob = issued.shares, issued.issuer, new_wallet()
    send(tester_stack, alice, shares.transfer_call(bob.address, 50))
    pay_in(tester_stack, shares, 10_000)
    send(tester_stack, alice, shares.snapshot_call())  # 6,000 claimable, 4,000 redeemable
    pay_in(tester_stack, shares, 1_000)  # not snapshotted: 400 of it is redeemable
    assert shares.redeemable_on_burn(50) == 2_200
    receipt = send(tester_stack, bob, shares.burn_call(50))
    assert paid(shares, receipt, "Redeemed") == 2_200
    assert shares.total_supply() == 50 and shares.balance_of(bob.address) == 0
    # Bob's claim on snapshot 1 outlives his burn (balances are read at the snapshot).
    assert shares.claimable(bob.address, 1) == 3_000
    # The next snapshot splits the 1,000 as if Bob's 200 had never left the new part.
    send(tester_stack, alice, shares.snapshot_call())
    assert shares.revenue_at(2) == (1_000, 600)
    assert shares.claimable(alice.address, 2) == 600  # Alice holds the whole supply now
    assert shares.redeemable_on_burn(50) == 2_000 + 200
    assert shares.coin_balance() == 11_000 - 2_200


def test_a_reentrant_holder_is_paid_once(tester_stack: Stack) -> None:
    issued = issue(tester_stack, supply=10, claimable_bps=5_000)
    shares, alice = issued.shares, issued.issuer
    attacker_address, _, _ = deploy_contract(
        tester_stack.w3, alice, "ReentrantShareholder", shares.address
    )
    attacker = tester_stack.w3.eth.contract(
        address=attacker_address,
        abi=load_artifact("ReentrantShareholder")["abi"],
    )
    send(tester_stack, alice, shares.transfer_call(attacker_address, 5))
    pay_in(tester_stack, shares, 1_000)
    send(tester_stack, alice, shares.snapshot_call())
    send(tester_stack, alice, attacker.functions.claim(1))
    send(tester_stack, alice, attacker.functions.burn(5))
    fn = attacker.functions
    assert fn.payments().call() == 2  # one claim, one burn
    assert fn.reentered().call() == 0 and fn.refused().call() == 2
    assert tester_stack.w3.eth.get_balance(attacker_address) == 250 + 250
    assert shares.coin_balance() == 500


def test_moving_the_agent_never_moves_the_holders_claims(tester_stack: Stack) -> None:
    issued = issue(tester_stack, supply=4)
    shares, alice, buyer = issued.shares, issued.issuer, new_wallet()
    pay_in(tester_stack, shares, 400)
    send(tester_stack, alice, shares.snapshot_call())
    nft = tester_stack.nft.contract.functions
    send(tester_stack, alice, nft.transferFrom(alice.address, buyer.address, issued.token_id))
    assert tester_stack.nft.owner_of(issued.token_id) == buyer.address
    assert shares.contract.functions.agentTokenId().call() == issued.token_id
    assert shares.claimable(alice.address, 1) == 400
    assert reverts_with(shares.claim_call(1), buyer.address).startswith("NothingToClaim")
    send(tester_stack, alice, shares.claim_call(1))
    assert shares.coin_balance() == 0
