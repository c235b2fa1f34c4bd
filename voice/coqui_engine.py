"""Coqui TTS (``coqui-tts``): any Coqui model by name or from a local folder; XTTS clones.

``ANIMA_TTS_COQUI_MODEL`` is either a Coqui model name (``tts_models/multilingual/
multi-dataset/xtts_v2``: Coqui downloads it where the network allows) or a local directory
holding ``config.json`` and the checkpoint (an XTTS folder with ``model.pth`` + ``vocab.json``,
or a VITS/Glow/... folder with its ``.pth``). Both go through ``TTS.api.TTS``: the same
loading code the tests run on a tiny randomly initialised checkpoint.

Cloning (XTTS): by default XTTS reads at most ``max_ref_len`` (10 s) of each reference file
and builds its GPT conditioning from the first ``gpt_cond_len`` (12 s) of them together, so a
one-minute sample handed over as one file is mostly ignored. Here the profile's sample is
split into clips of at most ``max_ref_len`` seconds (``voice.profiles``), every clip is
passed, and ``gpt_cond_len`` is set to the whole duration, so the speaker embedding is the
mean over all clips and the GPT latents average 4-second chunks of the entire sample. The
latents are computed once per sample and cached beside the profile.
"""

from __future__ import annotations

import hashlib
import logging
import math
import threading
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import VoiceEngineError
from voice.audio import Audio
from voice.base import CloneReference

log = logging.getLogger(__name__)
CHECKPOINT_NAMES = ("model.pth", "best_model.pth", "model_file.pth", "checkpoint.pth")


def _patch_xtts_for_transformers5() -> None:
    """transformers >= 5.2x hands the KV cache to ``forward`` as ``cache=``; coqui-tts 0.28's
    XTTS GPT wrapper only knows ``past_key_values=`` and silently drops it, so the second
    generation step fails (``'NoneType' object has no attribute 'get_seq_length'``). Map the
    new name onto the old one; a no-op on versions that already pass ``past_key_values``.
    """
    from TTS.tts.layers.xtts import gpt_inference

    cls = gpt_inference.GPT2InferenceModel
    if getattr(cls, "_anima_cache_patch", False):
        return
    original = cls.forward

    def forward(self: Any, input_ids: Any = None, past_key_values: Any = None, **kwargs: Any):  # type: ignore[no-untyped-def]
        cache = kwargs.pop("cache", None)
        return original(
            self, input_ids=input_ids, past_key_values=past_key_values or cache, **kwargs
        )

    cls.forward = forward
    cls._anima_cache_patch = True


class CoquiEngine:
    def __init__(self, model: str, language: str = "en", threads: int | None = None) -> None:
        self._spec = model
        self._language = language
        self._threads = threads
        self._tts: Any = None
        self._lock = threading.RLock()
        self._latents: dict[str, tuple[Any, Any]] = {}

    # ----- loading ---------------------------------------------------------------------
    def load(self) -> Any:
        with self._lock:
            if self._tts is None:
                self._tts = self._load()
            return self._tts

    def _load(self) -> Any:
        try:
            import torch
            from TTS.api import TTS
        except ImportError as exc:  # pragma: no cover - coqui-tts is in requirements.txt
            raise VoiceEngineError(f"coqui-tts is not installed: {exc}") from exc
        if self._threads:
            torch.set_num_threads(self._threads)
        _patch_xtts_for_transformers5()
        folder = Path(self._spec).expanduser()
        try:
            if folder.is_dir():
                config = folder / "config.json"
                if not config.is_file():
                    raise VoiceEngineError(f"Coqui model folder {folder} has no config.json")
                checkpoint = self._checkpoint(folder, config)
                return TTS(model_path=str(checkpoint), config_path=str(config), progress_bar=False)
            if "/" not in self._spec:
                raise VoiceEngineError(
                    f"Coqui model {self._spec!r}: give a local folder or a Coqui model name "
                    "such as 'tts_models/multilingual/multi-dataset/xtts_v2'"
                )
            return TTS(model_name=self._spec, progress_bar=False)
        except VoiceEngineError:
            raise
        except Exception as exc:
            raise VoiceEngineError(
                f"could not load Coqui model {self._spec!r}: {exc}. Offline, point "
                "ANIMA_TTS_COQUI_MODEL at a downloaded model folder."
            ) from exc

    @staticmethod
    def _checkpoint(folder: Path, config: Path) -> Path:
        import json

        if json.loads(config.read_text()).get("model") == "xtts":
            return folder  # XTTS loads model.pth + vocab.json from its folder
        for name in CHECKPOINT_NAMES:
            if (folder / name).is_file():
                return folder / name
        found = sorted(folder.glob("*.pth"))
        if not found:
            raise VoiceEngineError(f"Coqui model folder {folder} has no .pth checkpoint")
        return found[0]

    # ----- TTSEngine -------------------------------------------------------------------
    @property
    def name(self) -> str:
        return f"coqui:{Path(self._spec).name or self._spec}"

    @property
    def sample_rate(self) -> int:
        return int(self.load().synthesizer.output_sample_rate)

    @property
    def supports_cloning(self) -> bool:
        return bool(getattr(self._model().config, "supports_cloning", False))

    def _model(self) -> Any:
        return self.load().synthesizer.tts_model

    def synthesize(
        self, text: str, *, reference: CloneReference | None = None, speed: float = 1.0
    ) -> Audio:
        tts = self.load()
        with self._lock:  # torch modules keep per-call state; one synthesis at a time
            model = self._model()
            if reference is not None and self.supports_cloning and _is_xtts(model):
                gpt_latent, speaker = self._conditioning(model, reference)
                out = model.inference(
                    text,
                    self._language,
                    gpt_latent,
                    speaker,
                    speed=speed,
                    enable_text_splitting=True,
                )
                wav = out["wav"]
            else:
                kwargs: dict[str, Any] = {}
                if reference is not None and self.supports_cloning:
                    kwargs["speaker_wav"] = [str(p) for p in reference.clips]
                elif tts.is_multi_speaker and tts.speakers:
                    kwargs["speaker"] = tts.speakers[0]
                if tts.is_multi_lingual:
                    kwargs["language"] = self._language
                wav = tts.tts(text, **kwargs)
        samples = np.asarray(
            wav.detach().cpu().numpy() if hasattr(wav, "detach") else wav, dtype=np.float32
        ).reshape(-1)
        return Audio(samples, self.sample_rate)

    def conditioning(self, reference: CloneReference) -> tuple[Any, Any]:
        """XTTS's (GPT latents, speaker embedding) for ``reference`` (computed once)."""
        with self._lock:
            return self._conditioning(self._model(), reference)

    def _conditioning(self, model: Any, reference: CloneReference) -> tuple[Any, Any]:
        import torch

        tag = hashlib.sha256(f"{self._spec}|{reference.key}".encode()).hexdigest()[:16]
        if tag in self._latents:
            return self._latents[tag]
        cache = reference.cache_dir / f"coqui-{tag}.pt"
        if cache.is_file():
            saved = torch.load(cache, map_location="cpu", weights_only=True)
            latents = (saved["gpt"], saved["speaker"])
        else:
            config = model.config
            latents = model.get_conditioning_latents(
                audio_path=[str(p) for p in reference.clips],
                max_ref_length=int(config.max_ref_len),
                # the whole sample, in 4 s chunks averaged, not only its first 12 s
                gpt_cond_len=max(math.ceil(reference.duration_s), config.gpt_cond_chunk_len),
                gpt_cond_chunk_len=int(config.gpt_cond_chunk_len),
                sound_norm_refs=bool(config.sound_norm_refs),
            )
            cache.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache.with_suffix(".tmp")
            torch.save({"gpt": latents[0], "speaker": latents[1]}, tmp)
            tmp.replace(cache)
        self._latents[tag] = latents
        return latents


def _is_xtts(model: Any) -> bool:
    return hasattr(model, "get_conditioning_latents") and hasattr(model, "inference")
