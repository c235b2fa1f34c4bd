"""Durable jobs of the chain: minting an agent and anchoring a changed card.

Both have one durable step that talks to the node (``ChainService.mint_step`` /
``anchor_step``). A step that fails because the node is down is retried with backoff
(``ANIMA_CHAIN_TX_RETRIES``, each attempt waiting ``ANIMA_CHAIN_NODE_WAIT_S`` for the node);
a step cut short by a crash re-runs, checks the chain and re-broadcasts the transaction it had
recorded, so a mint is never sent twice. A contract refusal is final: the job fails with the
decoded reason and is not retried.
"""

from __future__ import annotations

from typing import Any

from core.errors import ChainError
from core.jobs import JobContext, StepFailed, TargetGone, job_kind


@job_kind("chain.mint")
def mint_agent(ctx: JobContext, *, agent_id: str, to: str) -> dict[str, Any]:
    chain = ctx.services.chain
    settings = ctx.services.settings
    if chain._agent_or_none(agent_id) is None:
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
            retries=settings.chain_tx_retries,
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


@job_kind("chain.anchor")
def anchor_card(
    ctx: JobContext,
    *,
    agent_id: str,
    card_hash: str | None = None,
    version: int | None = None,
    deadline: int | None = None,
    signer: str | None = None,
    signature: str | None = None,
) -> dict[str, Any]:
    chain = ctx.services.chain
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
        retries=ctx.services.settings.chain_tx_retries,
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
