"""The settlement job: one durable step that settles one batch at most once.

The step is retried with backoff while the node is down (``ANIMA_CHAIN_TX_RETRIES``, each
attempt waiting for the node); a step cut short by a crash runs again on restart and finds the
batch settled on chain or re-broadcasts its recorded transaction (``economy/settlement.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from core.errors import ChainError
from core.jobs import JobContext, job_kind

if TYPE_CHECKING:
    from economy.settlement import Settlement


@dataclass(frozen=True)
class SettlementDeps:
    """What the settlement job uses (handed over in ``container.py``)."""

    settlement: Settlement
    tx_retries: int  # ANIMA_CHAIN_TX_RETRIES


@job_kind("economy.settle", deps=SettlementDeps)
def settle_batch(ctx: JobContext[SettlementDeps], *, batch_id: str) -> dict[str, Any]:
    ctx.progress(0, 1, f"settling batch {batch_id[:10]}")
    result = ctx.step(
        "settle",
        ctx.deps.settlement.send_step,
        batch_id,
        retries=ctx.deps.tx_retries,
        backoff_s=1.0,
    )
    if result["status"] == "failed":
        raise ChainError(f"the settlement was refused: {result.get('error')}")
    ctx.progress(1, 1, f"batch {result['status']}")
    return result
