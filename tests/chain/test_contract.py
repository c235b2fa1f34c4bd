"""AgentNFT on an in-process chain (eth-tester): gas, minting, card updates, royalties, TBA.

Every transaction here is signed by a plain key and sent straight to the contract, not
through Anima's services: these are the rules the contract enforces for anyone.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
from eth_account.signers.local import LocalAccount
from web3.contract.contract import ContractFunction
from web3.logs import DISCARD

from chain import tba
from chain.contract import REVERTS, describe_revert, load_artifact, sign_card_update, token_id_of
from tests.chain.conftest import Stack
from tests.chain.helpers import new_wallet

HASH_A = "0x" + "aa" * 32
HASH_B = "0x" + "bb" * 32
HASH_C = "0x" + "cc" * 32


def send(stack: Stack, account: LocalAccount, call: ContractFunction, value: int = 0) -> Any:
    """Sign and send ``call`` from ``account`` (funded on demand); the receipt."""
    w3 = stack.w3
    stack.chain.fund(account.address, 10**19)
    tx = call.build_transaction(
        {
            "from": account.address,
            "nonce": w3.eth.get_transaction_count(account.address),
            "gas": 500_000,
            "value": value,
            "chainId": w3.eth.chain_id,
            "maxFeePerGas": 2 * w3.eth.get_block("latest")["baseFeePerGas"] + 10**9,
            "maxPriorityFeePerGas": 10**9,
        }
    )
    receipt = w3.eth.wait_for_transaction_receipt(
        w3.eth.send_raw_transaction(account.sign_transaction(tx).raw_transaction)
    )
    assert receipt["status"] == 1
    return receipt


def reverts_with(call: ContractFunction, sender: str) -> str:
    """The decoded error ``call`` reverts with when ``sender`` sends it (simulated)."""
    w3 = call.w3
    if w3.eth.get_balance(sender) < 10**18:  # eth-tester checks the gas money even for calls
        tx = w3.eth.send_transaction({"from": w3.eth.accounts[0], "to": sender, "value": 10**18})
        w3.eth.wait_for_transaction_receipt(tx)
    with pytest.raises(REVERTS) as caught:
        call.call({"from": sender})
    return describe_revert(caught.value)


def mint(stack: Stack, to: str, card_hash: str = HASH_A) -> tuple[str, int, Any]:
    agent_id = uuid.uuid4().hex
    receipt = send(stack, stack.deployer, stack.nft.mint_call(to, agent_id, card_hash))
    return agent_id, token_id_of(agent_id), receipt


def test_mint_gas_is_under_the_targets(tester_stack: Stack) -> None:
    owner = new_wallet()
    _, _, first = mint(tester_stack, owner.address)
    _, _, second = mint(tester_stack, owner.address)
    assert first["gasUsed"] <= 100_000, f"first mint to a new owner: {first['gasUsed']} gas"
    assert second["gasUsed"] <= 80_000, f"mint to an existing holder: {second['gasUsed']} gas"


def test_mint_records_owner_card_and_uri_and_never_mints_twice(tester_stack: Stack) -> None:
    nft, owner = tester_stack.nft, new_wallet()
    agent_id, token_id, _ = mint(tester_stack, owner.address)
    assert token_id == nft.contract.functions.tokenIdOf(bytes.fromhex(agent_id)).call()
    assert nft.owner_of(token_id) == owner.address
    assert nft.card_of(token_id) == (HASH_A, 0)
    uri = nft.contract.functions.tokenURI(token_id).call()
    assert uri == f"https://anima.test/api/nft/{token_id}"
    again = nft.mint_call(new_wallet().address, agent_id, HASH_B)
    assert "ERC721InvalidSender" in reverts_with(again, tester_stack.deployer.address)
    assert nft.owner_of(token_id) == owner.address  # unchanged


def test_only_the_minter_role_mints(tester_stack: Stack) -> None:
    stranger = new_wallet()
    call = tester_stack.nft.mint_call(stranger.address, uuid.uuid4().hex, HASH_A)
    assert "AccessControlUnauthorizedAccount" in reverts_with(call, stranger.address)


def test_direct_card_update_by_owner_or_operator_only(tester_stack: Stack) -> None:
    nft, owner, operator, stranger = tester_stack.nft, new_wallet(), new_wallet(), new_wallet()
    _, token_id, _ = mint(tester_stack, owner.address)
    refused = reverts_with(nft.update_call(token_id, HASH_B), stranger.address)
    assert "NotOwnerOrApproved" in refused
    send(tester_stack, owner, nft.update_call(token_id, HASH_B))
    assert nft.card_of(token_id) == (HASH_B, 1)
    send(tester_stack, owner, nft.contract.functions.approve(operator.address, token_id))
    send(tester_stack, operator, nft.update_call(token_id, HASH_C))
    assert nft.card_of(token_id) == (HASH_C, 2)


def test_relayed_update_accepts_the_owners_signature_once(tester_stack: Stack) -> None:
    nft, owner, relayer, stranger = tester_stack.nft, new_wallet(), new_wallet(), new_wallet()
    _, token_id, _ = mint(tester_stack, owner.address)
    deadline = int(time.time()) + 600
    signature = sign_card_update(owner, nft.typed_update(token_id, HASH_B, 0, deadline))
    relayed = nft.update_with_sig_call(token_id, HASH_B, 0, deadline, owner.address, signature)
    receipt = send(tester_stack, relayer, relayed)  # the relayer pays; the owner signed only
    assert nft.card_of(token_id) == (HASH_B, 1)
    event = nft.contract.events.CardUpdated().process_receipt(receipt, errors=DISCARD)[0]["args"]
    assert (event["version"], event["by"]) == (1, owner.address)

    # Replayed: the version (the signature's nonce) moved on.
    assert "StaleCardVersion" in reverts_with(relayed, relayer.address)
    # Signed by someone who does not hold the token.
    foreign = sign_card_update(stranger, nft.typed_update(token_id, HASH_C, 1, deadline))
    call = nft.update_with_sig_call(token_id, HASH_C, 1, deadline, stranger.address, foreign)
    assert "NotOwnerOrApproved" in reverts_with(call, relayer.address)
    # The owner named as signer, but the signature is someone else's.
    call = nft.update_with_sig_call(token_id, HASH_C, 1, deadline, owner.address, foreign)
    assert "InvalidCardSignature" in reverts_with(call, relayer.address)
    # A different hash than the one signed.
    good = sign_card_update(owner, nft.typed_update(token_id, HASH_C, 1, deadline))
    call = nft.update_with_sig_call(token_id, HASH_A, 1, deadline, owner.address, good)
    assert "InvalidCardSignature" in reverts_with(call, relayer.address)
    # Expired.
    past = int(time.time()) - 10
    late = sign_card_update(owner, nft.typed_update(token_id, HASH_C, 1, past))
    call = nft.update_with_sig_call(token_id, HASH_C, 1, past, owner.address, late)
    assert "SignatureExpired" in reverts_with(call, relayer.address)
    assert nft.card_of(token_id) == (HASH_B, 1)


def test_royalties_go_to_the_token_bound_account(tester_stack: Stack) -> None:
    nft, owner = tester_stack.nft, new_wallet()
    _, token_id, _ = mint(tester_stack, owner.address)
    receiver, amount = nft.royalty_info(token_id, 10**18)
    d = tester_stack.deployment
    registry = tester_stack.w3.eth.contract(
        address=d.registry, abi=load_artifact("ERC6551Registry")["abi"]
    )
    on_chain = registry.functions.account(
        d.implementation, b"\0" * 32, d.chain_id, d.address, token_id
    ).call()
    assert receiver == on_chain == nft.token_account(token_id)
    assert receiver == tba.account_address(
        d.registry, d.implementation, d.chain_id, d.address, token_id
    )
    assert amount == 5 * 10**16  # 500 basis points


def test_interfaces_are_plain_erc721_and_erc2981(tester_stack: Stack) -> None:
    supports = tester_stack.nft.contract.functions.supportsInterface
    for interface in ("0x01ffc9a7", "0x80ac58cd", "0x5b5e139f", "0x2a55205a", "0x49064906"):
        assert supports(bytes.fromhex(interface[2:])).call(), interface
    assert not supports(bytes.fromhex("ffffffff")).call()


def test_token_bound_account_follows_the_owner(tester_stack: Stack) -> None:
    nft, w3, d = tester_stack.nft, tester_stack.w3, tester_stack.deployment
    alice, bob = new_wallet(), new_wallet()
    _, token_id, _ = mint(tester_stack, alice.address)
    registry = w3.eth.contract(address=d.registry, abi=load_artifact("ERC6551Registry")["abi"])
    create = registry.functions.createAccount(
        d.implementation, b"\0" * 32, d.chain_id, d.address, token_id
    )
    send(tester_stack, alice, create)
    address = nft.token_account(token_id)
    account = w3.eth.contract(address=address, abi=load_artifact("ERC6551Account")["abi"])
    assert account.functions.owner().call() == alice.address
    tester_stack.chain.fund(address, 10**18)  # royalties arrive here
    pay = account.functions.execute(bob.address, 10**17, b"", 0)
    assert "Invalid signer" in reverts_with(pay, bob.address)

    send(
        tester_stack,
        alice,
        nft.contract.functions.transferFrom(alice.address, bob.address, token_id),
    )
    assert account.functions.owner().call() == bob.address
    assert "Invalid signer" in reverts_with(pay, alice.address)
    tester_stack.chain.fund(bob.address, 10**19)
    before = w3.eth.get_balance(bob.address)
    receipt = send(tester_stack, bob, pay)
    gas_cost = receipt["gasUsed"] * receipt["effectiveGasPrice"]
    assert w3.eth.get_balance(bob.address) == before + 10**17 - gas_cost
