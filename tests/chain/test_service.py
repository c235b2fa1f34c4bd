"""The chain service's parts without HTTP: the app acting on its own behalf (``SYSTEM``), the
callers' checks in the state-changing calls, the follower re-applying events after a crash,
and the ``Chain`` seam saying what the service needs of each node."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import delete

from agents.service import AgentView
from chain.agent_rows import AgentRows
from chain.anvil_chain import AnvilChain
from chain.base import Chain
from chain.eth_tester_chain import EthTesterChain
from chain.records import CursorRecord
from chain.rpc_chain import RpcChain
from container import Services
from core.errors import AuthError, NotOwnerError
from core.principal import ANONYMOUS, SYSTEM, Principal
from tests.chain.helpers import mint_job_of, new_wallet


def _minted(services: Services, owner: str, name: str) -> AgentView:
    agent = services.agents.create_agent({"name": name}, owner=owner, principal=SYSTEM)
    job = mint_job_of(services, agent.id)
    assert job.status == "succeeded", job.error
    minted = services.agents.get_agent(agent.id)
    assert minted.mint_state == "minted" and minted.owner_address == owner
    return minted


def test_the_app_itself_passes_every_owner_check(
    chain_services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    chain = chain_services.chain
    agent = _minted(chain_services, new_wallet().address, "Held")
    assert chain.require_owner(SYSTEM, agent.id).id == agent.id
    with pytest.raises(AuthError):
        chain.require_owner(ANONYMOUS, agent.id)
    with pytest.raises(NotOwnerError):
        chain.require_owner(Principal(address=new_wallet().address, via="session"), agent.id)
    chain.require_address(SYSTEM, agent.owner_address, "the agent")
    monkeypatch.setattr(chain_services.settings.auth, "anonymous_edits", False)
    chain.require_creator(SYSTEM)
    chain.require_address(SYSTEM, None, "a draft")
    with pytest.raises(AuthError):
        chain.require_creator(ANONYMOUS)


def test_state_changing_calls_check_the_caller(chain_services: Services) -> None:
    chain = chain_services.chain
    owner = new_wallet().address
    agent = _minted(chain_services, owner, "Checked")
    stranger = Principal(address=new_wallet().address, via="session")
    with pytest.raises(AuthError):
        chain.request_mint(agent.id, principal=ANONYMOUS)
    with pytest.raises(NotOwnerError):
        chain.request_anchor(agent.id, principal=stranger)
    with pytest.raises(NotOwnerError):
        chain.reconcile_anchors(owner, principal=stranger)
    # The holder's own reconcile queues nothing: the card has not changed since its mint.
    assert chain.reconcile_anchors(owner, principal=Principal(address=owner, via="session")) == []


def test_the_follower_applying_blocks_again_ends_the_same(chain_services: Services) -> None:
    chain = chain_services.chain
    agent = _minted(chain_services, new_wallet().address, "Replayed")
    nft = chain.ensure_started()
    chain.sync()
    assert chain_services.agents.get_agent(agent.id).chain_card_version == 0
    # The stored copy holds a newer card (version 5) when a crash before the position was
    # stored brings every event since the deployment again, the mint's card (version 0)
    # included: the copy does not go back.
    chain_services.agents.set_chain_card(agent.id, "0x" + "ab" * 32, 5)
    with chain_services.db.session() as s:
        s.execute(delete(CursorRecord))
    assert chain.sync() > 0
    again = chain_services.agents.get_agent(agent.id)
    assert again.chain_card_version == 5 and again.chain_card_hash == "0x" + "ab" * 32
    assert again.owner_address == agent.owner_address and again.mint_state == "minted"
    assert nft.owner_of(int(agent.token_id or 0)) == agent.owner_address


def test_every_chain_says_its_id_and_whether_it_restarts_itself(tmp_path: Path) -> None:
    anvil = AnvilChain(tmp_path / "anvil-state.json", chain_id=4242)
    tester, rpc = EthTesterChain(), RpcChain("http://127.0.0.1:9")
    for chain in (anvil, tester, rpc):
        assert isinstance(chain, Chain), type(chain).__name__
    assert anvil.chain_id == 4242
    assert tester.chain_id is None and rpc.chain_id is None
    # Nodes the app does not run are never restarted by it.
    assert tester.restart_if_stopped() is False
    assert rpc.restart_if_stopped() is False


def test_the_agents_service_offers_every_call_the_chain_makes(chain_services: Services) -> None:
    """The chain writes agent rows only through ``AgentRows``; the agents service must keep
    every one of those calls (a rename there would otherwise fail only on a live chain)."""
    names = [n for n, v in vars(AgentRows).items() if callable(v) and not n.startswith("_")]
    names += list(AgentRows.__annotations__)
    assert "set_mint_state" in names and "listeners" in names
    missing = [n for n in names if not hasattr(chain_services.agents, n)]
    assert missing == []
