"""Cut a streamed reply into pieces that can be spoken as soon as each is complete.

The first piece may end at a clause boundary (a comma after a few words) rather than a full
stop: the sooner it is complete, the sooner the user hears the agent. Later pieces end at
sentence boundaries, so intonation stays natural; a run-on sentence is cut at its last clause
boundary (or space) once it grows past ``max_words``, and any piece is cut at ``max_chars``
(at a space where there is one): text without spaces or stops must not reach an engine whole.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

_SENTENCE_END = re.compile(r"""[.!?…]+["'”’)\]]*(?=\s)|\n+""")
_CLAUSE_END = re.compile(r"""[,;:—–]["'”’)\]]*(?=\s)""")
_ABBREVIATIONS = {
    "mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "vs", "etc", "e.g", "i.e", "no", "mt",
}  # fmt: skip
_MARKUP = re.compile(r"[*_~`#>|]+|https?://\S+")
_SPACES = re.compile(r"\s+")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")  # NUL & co. break the phonemizer


def speakable(text: str) -> str:
    """The words to say: role-play markup (``*smiles*``), code marks, links and control
    characters removed."""
    return _SPACES.sub(" ", _MARKUP.sub(" ", _CONTROL.sub(" ", text))).strip()


def _is_abbreviation(text: str, end: int) -> bool:
    word = re.search(r"([A-Za-z.]+)\.$", text[: end + 1])
    if word is None:
        return False
    token = word.group(1).lower()
    return token in _ABBREVIATIONS or (len(token) == 1 and token.isalpha())


class SentenceCutter:
    def __init__(
        self, *, first_min_words: int = 3, max_words: int = 30, max_chars: int = 300
    ) -> None:
        self._buffer = ""
        self._first = True
        self._first_min_words = first_min_words
        self._max_words = max_words
        self._max_chars = max_chars

    def feed(self, delta: str) -> Iterator[str]:
        """Pieces completed by ``delta`` (possibly none)."""
        self._buffer += delta
        while (cut := self._next_cut()) is not None:
            piece, self._buffer = self._buffer[:cut], self._buffer[cut:]
            piece = speakable(piece)
            if piece:
                self._first = False
                yield piece

    def flush(self) -> Iterator[str]:
        """Whatever is left once the reply has ended."""
        piece, self._buffer = speakable(self._buffer), ""
        if piece:
            self._first = False
            yield piece

    def _next_cut(self) -> int | None:
        cut = self._natural_cut()
        if len(self._buffer) > self._max_chars and (cut is None or cut > self._max_chars):
            space = self._buffer.rfind(" ", 0, self._max_chars)
            return space + 1 if space > 0 else self._max_chars
        return cut

    def _natural_cut(self) -> int | None:
        text = self._buffer
        for match in _SENTENCE_END.finditer(text):
            end = match.end()
            if text[match.start()] == "." and _is_abbreviation(text, match.start()):
                continue
            if len(speakable(text[:end]).split()) == 0:
                continue
            return end
        words = len(text.split())
        if self._first and words > self._first_min_words:
            for match in _CLAUSE_END.finditer(text):
                if len(text[: match.end()].split()) >= self._first_min_words:
                    return match.end()
        if words > self._max_words:
            clauses = [m.end() for m in _CLAUSE_END.finditer(text)]
            if clauses:
                return clauses[-1]
            return text.rstrip().rfind(" ") + 1 or None
        return None
