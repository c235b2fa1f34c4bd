"""Reference speakers for voice tests and bench/voice.py: Debian festival voices.

Three distinct speakers (two US male diphone voices, one US female HTS voice), none of them
the default Piper voice, so "the agent now sounds more like the sample" can be measured on
voices the engine has never been tuned to.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

FESTIVAL_VOICES = {
    "kal": "kal_diphone",
    "ked": "ked_diphone",
    "slt": "cmu_us_slt_arctic_hts",
}
SAMPLE_TEXT = (
    "It was a bright cold day in April, and the clocks were striking thirteen. The hallway "
    "smelt of boiled cabbage and old rag mats. At one end of it a coloured poster, too large "
    "for indoor display, had been tacked to the wall. It depicted simply an enormous face, "
    "more than a metre wide: the face of a man of about forty-five, with a heavy black "
    "moustache and ruggedly handsome features."
)


def festival_say(text: str, voice: str, out: Path) -> Path:
    """``text`` spoken by festival ``voice`` into the WAV file ``out``."""
    text2wave = shutil.which("text2wave")
    if text2wave is None:
        raise RuntimeError(
            "festival is not installed: run `make install-test` (scripts/bootstrap.sh --test "
            "installs festival and the festvox voices)"
        )
    subprocess.run(
        [text2wave, "-eval", f"(voice_{voice})", "-o", str(out)],
        input=text.encode(),
        check=True,
        capture_output=True,
        timeout=120,
    )
    return out


def festival_samples(folder: Path, text: str = SAMPLE_TEXT) -> dict[str, Path]:
    return {
        name: festival_say(text, voice, folder / f"{name}.wav")
        for name, voice in FESTIVAL_VOICES.items()
    }
