"""Voice matching for engines that cannot clone: move a fixed voice toward a creator's sample.

Piper and espeak-ng speak one voice each. With the WORLD vocoder (pyworld) their output is
taken apart into pitch (F0), spectral envelope and aperiodicity, and put back together with
1. the pitch mapped onto the sample's log-F0 mean and spread (a low voice stays low, a lively
   one stays lively), and
2. the envelope's frequency axis stretched by a factor ``alpha`` (vocal-tract length: the
   biggest single difference between speakers) and then equalised toward the sample's average
   envelope (timbre, brightness).
``alpha`` is chosen by trying a coarse grid of values (then its neighbours) on a calibration
sentence and keeping the one whose speaker embedding is closest to the sample's; the
similarity reported to the creator is then measured on a *different* sentence, so the figure
is not the one that was optimised.

This is not cloning: rhythm, accent and articulation stay the engine's. Anima reports the
speaker-embedding similarity before and after, and calls it what it is.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pyworld as pw

from voice.audio import Audio
from voice.speaker import SpeakerEncoder, cosine

FRAME_PERIOD_MS = 5.0
COARSE_ALPHAS = (0.8, 0.9, 1.0, 1.1, 1.2, 1.3)  # then +-0.05 around the best
EQ_LIMIT = 2.3  # ln power ratio, about +-10 dB: enough for timbre, never a howl
EQ_SMOOTH_BINS = 9
MAX_TARGET_S = 30.0


@dataclass
class MatchParams:
    """What ``apply`` needs; stored as JSON with the voice profile, one per TTS engine."""

    engine: str
    sample_rate: int
    src_f0_mean: float
    src_f0_std: float
    tgt_f0_mean: float
    tgt_f0_std: float
    alpha: float
    eq: list[float] = field(repr=False)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> MatchParams:
        return cls(**json.loads(text))


@dataclass(frozen=True)
class MatchResult:
    params: MatchParams
    similarity_before: float
    similarity_after: float
    tried: dict[float, float]  # alpha -> similarity on the calibration sentence


@dataclass
class _World:
    f0: np.ndarray
    sp: np.ndarray
    ap: np.ndarray


def _analyse(audio: Audio) -> _World:
    x = audio.samples.astype(np.float64)
    sr = audio.sample_rate
    f0, t = pw.dio(x, sr, frame_period=FRAME_PERIOD_MS)
    f0 = pw.stonemask(x, f0, t, sr)
    sp = pw.cheaptrick(x, f0, t, sr)
    ap = pw.d4c(x, f0, t, sr)
    return _World(f0, sp, ap)


def _log_f0_stats(f0: np.ndarray) -> tuple[float, float]:
    voiced = f0[f0 > 0]
    if len(voiced) < 10:
        return 0.0, 0.0
    logs = np.log(voiced)
    return float(logs.mean()), float(logs.std())


def _warp(sp: np.ndarray, alpha: float) -> np.ndarray:
    """``sp`` with its frequency axis stretched: new(f) = old(f / alpha)."""
    bins = sp.shape[1]
    src = np.clip(np.arange(bins) / alpha, 0, bins - 1)
    lo = np.floor(src).astype(int)
    hi = np.minimum(lo + 1, bins - 1)
    w = (src - lo)[None, :]
    return sp[:, lo] * (1 - w) + sp[:, hi] * w


def _mean_log_envelope(world: _World) -> np.ndarray:
    voiced = world.f0 > 0
    frames = world.sp[voiced] if voiced.sum() >= 10 else world.sp
    return np.log(np.maximum(frames, 1e-16)).mean(axis=0)


def _eq(target_env: np.ndarray, source_sp: np.ndarray, source_f0: np.ndarray) -> np.ndarray:
    diff = target_env - _mean_log_envelope(_World(source_f0, source_sp, source_sp))
    kernel = np.ones(EQ_SMOOTH_BINS) / EQ_SMOOTH_BINS
    smooth = np.convolve(np.pad(diff, EQ_SMOOTH_BINS // 2, mode="edge"), kernel, mode="valid")
    return np.clip(smooth, -EQ_LIMIT, EQ_LIMIT)


def _render(world: _World, params: MatchParams, sr: int) -> Audio:
    f0 = world.f0.copy()
    voiced = f0 > 0
    if params.src_f0_std > 0 and params.tgt_f0_std > 0 and voiced.any():
        z = (np.log(f0[voiced]) - params.src_f0_mean) / params.src_f0_std
        f0[voiced] = np.exp(z * params.tgt_f0_std + params.tgt_f0_mean)
    sp = _warp(world.sp, params.alpha) * np.exp(np.asarray(params.eq))[None, :]
    y = pw.synthesize(f0, np.ascontiguousarray(sp), world.ap, sr, FRAME_PERIOD_MS)
    peak = float(np.max(np.abs(y))) if len(y) else 0.0
    if peak > 0.95:
        y = y * (0.95 / peak)
    return Audio(y.astype(np.float32), sr)


def apply(audio: Audio, params: MatchParams) -> Audio:
    """``audio`` (the engine's voice) moved toward the profile's voice."""
    if len(audio.samples) < audio.sample_rate // 20:
        return audio
    if audio.sample_rate != params.sample_rate:
        audio = audio.resampled(params.sample_rate)
    return _render(_analyse(audio), params, params.sample_rate)


def _target_excerpt(sample: Audio, rate: int) -> Audio:
    """At most a minute of the sample, in pieces spread over all of it (analysis is O(n))."""
    audio = sample.resampled(rate)
    limit = int(MAX_TARGET_S * rate)
    if len(audio.samples) <= limit:
        return audio
    pieces = 6
    step = len(audio.samples) // pieces
    take = limit // pieces
    parts = [audio.samples[i * step : i * step + take] for i in range(pieces)]
    return Audio(np.concatenate(parts), rate)


def fit(
    engine: str,
    calibration: Audio,
    held_out: Audio,
    sample: Audio,
    sample_embedding: np.ndarray,
    encoder: SpeakerEncoder,
) -> MatchResult:
    """Choose the parameters on ``calibration``; report before/after on ``held_out``.

    Both are the engine's own speech (fixed texts); ``sample`` is the creator's recording.
    """
    rate = calibration.sample_rate
    target = _analyse(_target_excerpt(sample, rate))
    tgt_mean, tgt_std = _log_f0_stats(target.f0)
    target_env = _mean_log_envelope(target)
    cal = _analyse(calibration)
    src_mean, src_std = _log_f0_stats(cal.f0)
    base: dict[str, Any] = {
        "engine": engine,
        "sample_rate": rate,
        "src_f0_mean": src_mean,
        "src_f0_std": src_std,
        "tgt_f0_mean": tgt_mean,
        "tgt_f0_std": tgt_std,
    }
    tried: dict[float, float] = {}
    candidates: dict[float, MatchParams] = {}

    def score(alpha: float) -> None:
        eq = _eq(target_env, _warp(cal.sp, alpha), cal.f0)
        params = MatchParams(**base, alpha=alpha, eq=[round(float(v), 5) for v in eq])
        candidates[alpha] = params
        tried[alpha] = cosine(encoder.embed(_render(cal, params, rate)), sample_embedding)

    for alpha in COARSE_ALPHAS:
        score(alpha)
    coarse_best = max(tried, key=tried.__getitem__)
    for alpha in (round(coarse_best - 0.05, 2), round(coarse_best + 0.05, 2)):
        if COARSE_ALPHAS[0] <= alpha <= COARSE_ALPHAS[-1]:
            score(alpha)
    best = candidates[max(tried, key=tried.__getitem__)]
    before = cosine(encoder.embed(held_out), sample_embedding)
    after = cosine(encoder.embed(apply(held_out, best)), sample_embedding)
    return MatchResult(params=best, similarity_before=before, similarity_after=after, tried=tried)
