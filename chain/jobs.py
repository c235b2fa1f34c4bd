"""Durable jobs of the chain: minting an agent and anchoring a changed card.

Both have one durable step that talks to the node (``ChainService.mint_step`` /
``anchor_step``). A step that fails because the node is down is retried with backoff
(``ANIMA_CHAIN_TX_RETRIES``, each attempt waiting ``ANIMA_CHAIN_NODE_WAIT_S`` for the node);
a step cut short by a crash re-runs, checks the chain and re-broadcasts the transaction it had
recorded, so a mint is never sent twice. A contract refusal is final: the job fails with the
decoded reason and is not retried.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from core.errors import ChainError, NotFoundError
from core.jobs import JobContext, StepFailed, TargetGone, job_kind

if TYPE_CHECKING:
    from agents.service import AgentService
    from chain.service import ChainService


@dataclass(frozen=True)
class ChainJobDeps:
    """What the chain's jobs use (handed over in ``container.py``)."""

    chain: ChainService
    agents: AgentService
    tx_retries: int  # ANIMA_CHAIN_TX_RETRIES

    def agent_exists(self, agent_id: str) -> bool:
        try:
            self.agents.get_agent(agent_id)
        except NotFoundError:
            return False
        return True


@job_kind("chain.mint", deps=ChainJobDeps)
def mint_agent(ctx: JobContext[ChainJobDeps], *, agent_id: str, to: str) -> dict[str, Any]:
    chain = ctx.deps.chain
    if not ctx.deps.agent_exists(agent_id):
        raise TargetGone("the agent was deleted before it was minted")
    ctx.progress(0, 1, "minting")
    try:
        result = ctx.step(
            "mint",
            chain.mint_step,
            agent_id,
            to,
            ctx.step_key("mint"),
            progress=ctx.progress,
            retries=ctx.deps.tx_retries,
            backoff_s=1.0,
        )
    except StepFailed:
        chain.mark_mint_failed(agent_id)
        raise
    if result["status"] == "gone":
        raise TargetGone("the agent was deleted before it was minted")
    if result["status"] != "minted":
        chain.mark_mint_failed(agent_id)
        raise ChainError(f"the mint was refused: {result.get('error')}")
    ctx.progress(1, 1, f"minted to {result['owner']}")
    return result


@job_kind("chain.anchor", deps=ChainJobDeps)
def anchor_card(
    ctx: JobContext[ChainJobDeps],
    *,
    agent_id: str,
    card_hash: str | None = None,
    version: int | None = None,
    deadline: int | None = None,
    signer: str | None = None,
    signature: str | None = None,
) -> dict[str, Any]:
    chain = ctx.deps.chain
    ctx.progress(0, 1, "anchoring the card hash")
    result = ctx.step(
        "anchor",
        chain.anchor_step,
        agent_id,
        ctx.step_key("anchor"),
        card_hash,
        version,
        deadline,
        signer,
        signature,
        retries=ctx.deps.tx_retries,
        backoff_s=1.0,
    )
    if result["status"] == "gone":
        raise TargetGone("the agent was deleted")
    if result["status"] == "reverted":
        raise ChainError(f"the card update was refused: {result.get('error')}")
    if result["status"] == "awaiting_signature":
        ctx.progress(1, 1, "waiting for the holder's signature (sign it on the agent page)")
    else:
        ctx.progress(1, 1, f"card version {result.get('version')} anchored")
    return result
