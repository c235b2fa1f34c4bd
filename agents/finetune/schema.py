"""What a fine-tune is asked to do and what it reports: settings, data summary, metrics, views.

``FinetuneSettings`` is the one description of a run's knobs: the API validates requests
against it and the studio builds its sliders from the same bounds, so the two cannot disagree.
The defaults are sized for the bundled 135M model on two CPU cores: a few minutes for 50 example
dialogues, an adapter of about 3.7 MB (rank 8 on the attention projections, the layers every
serving engine in ``agents/llm`` can apply per request).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from core.db import UTCDateTime
from core.jobs import JobView
from core.settings import Settings

TargetModule = Literal["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
DEFAULT_TARGETS: list[TargetModule] = ["q_proj", "k_proj", "v_proj", "o_proj"]


class FinetuneSettings(BaseModel):
    """Knobs of one run. ``max_steps`` (when set) wins over ``epochs``."""

    model_config = ConfigDict(extra="forbid")

    use_examples: bool = Field(default=True, description="Train on the card's example dialogues.")
    use_greetings: bool = Field(
        default=True, description="Train on the first message and alternate greetings."
    )
    epochs: float = Field(default=3.0, gt=0, le=50, description="Passes over the training data.")
    max_steps: int | None = Field(
        default=None, ge=1, le=100_000, description="Optimizer steps; overrides epochs."
    )
    learning_rate: float = Field(default=1e-3, gt=0, le=1e-2)
    batch_size: int = Field(default=4, ge=1, le=64)
    gradient_accumulation: int = Field(default=1, ge=1, le=64)
    lora_r: int = Field(default=8, ge=1, le=256, description="LoRA rank.")
    lora_alpha: int = Field(
        default=16, ge=1, le=512, description="LoRA scaling; twice lora_r when not given."
    )
    lora_dropout: float = Field(default=0.05, ge=0, lt=1)
    target_modules: list[TargetModule] = Field(default_factory=lambda: list(DEFAULT_TARGETS))
    max_seq_len: int = Field(
        default=384, ge=32, le=8192, description="Tokens per training example (longer are cut)."
    )
    context: Literal["persona", "minimal"] = Field(
        default="persona",
        description="System prompt of each example: the card's persona as served (without the "
        "example dialogues), or only its system line. A persona that takes more than half of "
        "max_seq_len falls back to the system line.",
    )
    holdout_fraction: float = Field(
        default=0.15, ge=0.05, le=0.5, description="Share of dialogues held out for evaluation."
    )
    checkpoint_every: int = Field(
        default=10, ge=1, le=10_000, description="Steps between checkpoints (resume points)."
    )
    eval_samples: int = Field(
        default=8, ge=0, le=64, description="Held-out prompts answered for the style score."
    )
    eval_max_new_tokens: int = Field(default=48, ge=8, le=512)
    seed: int = Field(default=0, ge=0)

    @model_validator(mode="before")
    @classmethod
    def _alpha_follows_rank(cls, data: Any) -> Any:
        """Without an explicit ``lora_alpha``, alpha is twice the rank, so a bigger rank does
        not shrink the adapter's effect (peft scales by alpha / r). The studio's rank slider
        and an API request that names only ``lora_r`` get the same run."""
        if not isinstance(data, dict) or data.get("lora_alpha") is not None:
            return data
        rank = data.get("lora_r")
        if isinstance(rank, int) and not isinstance(rank, bool) and 1 <= rank <= 256:
            return {**data, "lora_alpha": 2 * rank}
        return data

    def total_steps(self, train_examples: int) -> int:
        if self.max_steps is not None:
            return self.max_steps
        per_epoch = -(-train_examples // (self.batch_size * self.gradient_accumulation))
        return max(1, round(self.epochs * per_epoch))


def min_examples(settings: Settings) -> int:
    return settings.finetune.min_examples


class DataSummary(BaseModel):
    """What the training data came to; shown before a run starts and kept with it."""

    examples: int = Field(description="Dialogues with at least one reply by the character.")
    by_source: dict[str, int]
    replies: int = Field(description="Replies by the character, over all dialogues.")
    train: int
    held_out: int
    min_examples: int
    notes: list[str] = Field(default_factory=list)


class LossPoint(BaseModel):
    step: int
    loss: float
    learning_rate: float | None = None


class ModelScores(BaseModel):
    perplexity: float
    style: float | None = None


class SampleReply(BaseModel):
    """One held-out prompt with the creator's reply and what each model wrote."""

    prompt: str
    reference: str
    before: str
    after: str


class EvalReport(BaseModel):
    """Before (base model) and after (base + adapter), on the held-out dialogues."""

    before: ModelScores
    after: ModelScores
    style_reference: float | None = Field(
        default=None,
        description="The style score of the creator's own held-out replies: the ceiling.",
    )
    held_out_dialogues: int
    held_out_tokens: int
    perplexity_change: float = Field(description="(after - before) / before; negative is better.")
    samples: list[SampleReply] = Field(default_factory=list)

    @property
    def improved(self) -> bool:
        style_ok = (
            self.before.style is None
            or self.after.style is None
            or self.after.style >= self.before.style - 0.02
        )
        return self.after.perplexity < self.before.perplexity and style_ok


class TrainingStats(BaseModel):
    steps: int
    seconds: float
    seconds_per_step: float
    resumed_from_step: int = 0
    final_loss: float | None = None
    device: str
    dtype: str
    peak_rss_mb: float | None = None
    train_tokens: int = 0


class RunMetrics(BaseModel):
    loss: list[LossPoint] = Field(default_factory=list)
    training: TrainingStats | None = None
    eval: EvalReport | None = None
    resumes: list[int] = Field(
        default_factory=list, description="Checkpoint steps the run resumed from after a crash."
    )


RunStage = Literal[
    "queued", "preparing", "training", "evaluating", "publishing", "ready", "failed", "cancelled"
]


class AdapterView(BaseModel):
    name: str
    agent_id: str
    version: int
    source: Literal["trained", "imported"]
    run_id: str | None
    base_model: str
    base_model_name: str
    compatible: bool = Field(description="Trained on the base model the agent uses now.")
    active: bool
    size_bytes: int
    eval: EvalReport | None = None
    created_at: UTCDateTime


class RunView(BaseModel):
    id: str
    agent_id: str
    version: int
    adapter_name: str
    stage: RunStage
    base_model: str
    settings: FinetuneSettings
    data: DataSummary
    metrics: RunMetrics
    job: JobView | None
    adapter: AdapterView | None = Field(
        default=None, description="The adapter this run produced, while it exists."
    )
    created_at: UTCDateTime
    updated_at: UTCDateTime
