"""How the creator tells whether an adapter helped: held-out perplexity and a style score.

**Perplexity** is ``exp`` of the mean negative log-likelihood of the character's held-out
replies (only their tokens; the prompt and user turns are context), for the base model and for
base + adapter on exactly the same tokens. Lower means the model finds the creator's own
unseen replies less surprising: the most direct measure of "speaks like my character".

**Style score** compares what the model *writes* with how the creator writes. Each model
answers the held-out prompts (greedy, with the agent's repetition penalty, as served); the
score is the cosine similarity between the TF-IDF-weighted character 2-4-gram profile of those
replies and that of the creator's training replies, from 0 to 1. Why this measure:

- Character n-grams are the standard features of stylometry (authorship attribution; see
  Stamatatos 2009, "A survey of modern authorship attribution methods"): they capture exactly
  what makes a role-play voice (catchphrases, dialect spellings, ``*actions*`` in asterisks,
  punctuation habits, emoticons) and they work on short texts, where word statistics do not.
- IDF weighting, over every reply in the comparison, discounts what all English shares ("the",
  "and"), so the score moves with what is distinctive.
- Comparing whole profiles (averaged over replies), not reply to reply, asks "does it sound
  like them", not "does it say what they said": the prompts are new, the content differs.
- It needs no extra model and is deterministic, so before/after differences are the adapter's.

``style_reference``, the score of the creator's own held-out replies, is the ceiling to read it
against. The score is not a quality measure (parroting catchphrases would raise it): the studio
shows it beside perplexity and a few replies before and after, and the creator decides.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agents.finetune.schema import EvalReport, FinetuneSettings, ModelScores, SampleReply
from core.settings import Settings

if TYPE_CHECKING:
    from agents.finetune.data import Dialogue, Renderer, Sample

NGRAM_SIZES = (2, 3, 4)


# ----- style ---------------------------------------------------------------------------------
def _ngrams(text: str) -> Counter[str]:
    padded = f" {' '.join(text.split())} "
    grams: Counter[str] = Counter()
    for n in NGRAM_SIZES:
        grams.update(padded[i : i + n] for i in range(len(padded) - n + 1))
    return grams


class StyleScorer:
    """TF-IDF character n-gram profiles; IDF over every reply the scorer is given."""

    def __init__(self, reference: Sequence[str], others: Sequence[Sequence[str]]) -> None:
        docs = [_ngrams(t) for t in [*reference, *(t for group in others for t in group)] if t]
        frequency: Counter[str] = Counter()
        for doc in docs:
            frequency.update(doc.keys())
        total = len(docs)
        self.idf = {g: math.log((1 + total) / (1 + df)) + 1.0 for g, df in frequency.items()}
        self.reference = self.profile(reference)

    def profile(self, texts: Sequence[str]) -> dict[str, float]:
        """The mean of the replies' unit-length TF-IDF vectors (sublinear term frequency)."""
        centroid: Counter[str] = Counter()
        used = 0
        for text in texts:
            grams = _ngrams(text)
            if not grams:
                continue
            vector = {g: (1 + math.log(c)) * self.idf.get(g, 1.0) for g, c in grams.items()}
            norm = math.sqrt(sum(v * v for v in vector.values())) or 1.0
            for gram, value in vector.items():
                centroid[gram] += value / norm
            used += 1
        return {g: v / used for g, v in centroid.items()} if used else {}

    def score(self, texts: Sequence[str]) -> float:
        """Cosine similarity of ``texts``' profile to the reference profile, 0..1."""
        return _cosine(self.profile(texts), self.reference)


def _cosine(a: dict[str, float], b: dict[str, float]) -> float:
    if not a or not b:
        return 0.0
    dot = sum(v * b.get(g, 0.0) for g, v in a.items())
    norm = math.sqrt(sum(v * v for v in a.values())) * math.sqrt(sum(v * v for v in b.values()))
    return round(dot / norm, 4) if norm else 0.0


# ----- perplexity ------------------------------------------------------------------------------
def perplexity(model: Any, samples: Sequence[Any], pad_id: int, batch_size: int = 4) -> float:
    """exp(mean NLL) over the labelled tokens of ``samples`` (token-weighted)."""
    import torch

    from agents.finetune.data import collate

    pad = collate(pad_id)
    device = next(model.parameters()).device
    total_nll, total_tokens = 0.0, 0
    model.eval()
    with torch.inference_mode():
        for start in range(0, len(samples), batch_size):
            chunk = samples[start : start + batch_size]
            batch = pad([{"input_ids": s.input_ids, "labels": s.labels} for s in chunk])
            batch = {k: v.to(device) for k, v in batch.items()}
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
            logits = logits.logits[:, :-1].float()
            targets = batch["labels"][:, 1:]
            nll = torch.nn.functional.cross_entropy(
                logits.reshape(-1, logits.shape[-1]),
                targets.reshape(-1),
                ignore_index=-100,
                reduction="sum",
            )
            total_nll += float(nll)
            total_tokens += int((targets != -100).sum())
    if total_tokens == 0:
        return float("nan")
    return round(math.exp(total_nll / total_tokens), 4)


# ----- replies ---------------------------------------------------------------------------------
def generate(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[list[int]],
    max_new_tokens: int,
    repetition_penalty: float,
    batch_size: int = 8,
) -> list[str]:
    """Greedy replies to tokenised prompts, batched with left padding."""
    import torch

    device = next(model.parameters()).device
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    replies: list[str] = []
    model.eval()
    with torch.inference_mode():
        for start in range(0, len(prompts), batch_size):
            chunk = prompts[start : start + batch_size]
            width = max(len(p) for p in chunk)
            ids = torch.tensor([[pad_id] * (width - len(p)) + list(p) for p in chunk])
            mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in chunk])
            out = model.generate(
                input_ids=ids.to(device),
                attention_mask=mask.to(device),
                max_new_tokens=max_new_tokens,
                do_sample=False,
                temperature=None,
                top_p=None,
                top_k=None,
                repetition_penalty=repetition_penalty,
                pad_token_id=pad_id,
            )
            for row in out[:, width:].tolist():
                replies.append(tokenizer.decode(row, skip_special_tokens=True).strip())
    return replies


# ----- one run's evaluation ------------------------------------------------------------------
def _reply_prompts(
    renderer: Renderer, held: Sequence[Dialogue], options: FinetuneSettings
) -> tuple[list[list[int]], list[str], list[str]]:
    """Held-out prompts up to each dialogue's first reply: (prompt ids, reference, context).

    A prompt too long to leave room for the reply is skipped; at most ``eval_samples``.
    """
    prompts: list[list[int]] = []
    references: list[str] = []
    contexts: list[str] = []
    for dialogue in held:
        turn = next(i for i, m in enumerate(dialogue.messages) if m.role == "assistant")
        part = dialogue.model_copy(update={"messages": dialogue.messages[:turn]})
        ids = renderer.prompt_ids(renderer.conversation(part))
        if len(ids) + options.eval_max_new_tokens > max(options.max_seq_len, 512):
            continue
        prompts.append(ids)
        references.append(dialogue.messages[turn].content)
        contexts.append(dialogue.messages[turn - 1].content if turn else "(greeting)")
        if len(prompts) >= options.eval_samples:
            break
    return prompts, references, contexts


def _replies_before_after(
    model: Any,
    tokenizer: Any,
    prompts: list[list[int]],
    max_new_tokens: int,
    repetition_penalty: float,
) -> dict[str, list[str]]:
    """The base model's replies (adapter disabled) and the adapted model's, same prompts."""
    with model.disable_adapter():
        before = generate(model, tokenizer, prompts, max_new_tokens, repetition_penalty)
    after = generate(model, tokenizer, prompts, max_new_tokens, repetition_penalty)
    return {"before": before, "after": after}


def _style_scores(
    train: Sequence[Dialogue], references: list[str], replies: dict[str, list[str]]
) -> dict[str, float | None]:
    """How close each set of replies comes to the creator's own training replies."""
    creator = [m.content for d in train for m in d.messages if m.role == "assistant"]
    scorer = StyleScorer(creator, [references, replies["before"], replies["after"]])
    return {
        "before": scorer.score(replies["before"]),
        "after": scorer.score(replies["after"]),
        "reference": scorer.score(references),
    }


def evaluate_adapter(
    model_dir: Path,
    adapter_dir: Path,
    renderer: Renderer,
    train: Sequence[Dialogue],
    held: Sequence[Dialogue],
    held_samples: Sequence[Sample],
    options: FinetuneSettings,
    repetition_penalty: float,
    settings: Settings,
) -> EvalReport:
    """Perplexity and style score of the base model and of base + adapter, same inputs.

    One copy of the base model serves both: peft's ``disable_adapter`` gives the base model's
    outputs, so "before" and "after" differ only by the adapter.
    """
    from peft import PeftModel

    from agents.finetune.trainer import MODEL_WORK_LOCK, load_base, release_memory

    with MODEL_WORK_LOCK:
        base = load_base(model_dir, settings)
        model = PeftModel.from_pretrained(base.model, str(adapter_dir))
        tokenizer = base.tokenizer
        pad = tokenizer.pad_token_id
        with model.disable_adapter():
            ppl_before = perplexity(model, held_samples, pad)
        ppl_after = perplexity(model, held_samples, pad)

        prompts, references, contexts = _reply_prompts(renderer, held, options)
        style: dict[str, float | None] = {"before": None, "after": None, "reference": None}
        replies: dict[str, list[str]] = {"before": [], "after": []}
        if prompts:
            replies = _replies_before_after(
                model, tokenizer, prompts, options.eval_max_new_tokens, repetition_penalty
            )
            style = _style_scores(train, references, replies)
        del model, base
        release_memory()
    samples = [
        SampleReply(prompt=c, reference=r, before=b, after=a)
        for c, r, b, a in zip(
            contexts, references, replies["before"], replies["after"], strict=False
        )
    ]
    return EvalReport(
        before=ModelScores(perplexity=ppl_before, style=style["before"]),
        after=ModelScores(perplexity=ppl_after, style=style["after"]),
        style_reference=style["reference"],
        held_out_dialogues=len(held),
        held_out_tokens=sum(s.target_tokens for s in held_samples),
        perplexity_change=round((ppl_after - ppl_before) / ppl_before, 4),
        samples=samples[:3],
    )
