"""espeak-ng: the fallback voice. Robotic but tiny, instant and in every Linux distribution.

Used where the Piper voice cannot load, or chosen by ``ANIMA_TTS_ENGINE=espeak``. It runs the
``espeak-ng`` program (Debian package ``espeak-ng``, installed by ``scripts/bootstrap.sh``);
text goes in on stdin, so nothing a user writes is ever parsed as a command-line option.
"""

from __future__ import annotations

import shutil
import subprocess

from core.errors import VoiceEngineError
from voice.audio import Audio, decode_mono
from voice.base import CloneReference

WORDS_PER_MINUTE = 165
SAMPLE_RATE = 22_050


class EspeakEngine:
    def __init__(self, voice: str = "en-us") -> None:
        self._binary = shutil.which("espeak-ng")
        if self._binary is None:
            raise VoiceEngineError(
                "espeak-ng is not installed (Debian: apt-get install espeak-ng; "
                "`make install` does it)"
            )
        self._voice = voice

    @property
    def name(self) -> str:
        return f"espeak:{self._voice}"

    @property
    def sample_rate(self) -> int:
        return SAMPLE_RATE

    @property
    def supports_cloning(self) -> bool:
        return False

    def synthesize(
        self, text: str, *, reference: CloneReference | None = None, speed: float = 1.0
    ) -> Audio:
        rate = str(int(WORDS_PER_MINUTE * speed))
        proc = subprocess.run(
            [self._binary, "-v", self._voice, "-s", rate, "-b", "1", "--stdout", "--stdin"],
            input=text.encode(),
            capture_output=True,
            timeout=60,
            check=False,
        )
        if proc.returncode != 0 or not proc.stdout:
            raise VoiceEngineError(
                f"espeak-ng failed: {proc.stderr.decode(errors='replace').strip()[:200]}"
            )
        return decode_mono(proc.stdout)
