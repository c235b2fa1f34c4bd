"""A reply is stored and reported however its reader stops."""

from __future__ import annotations

from collections.abc import Iterator

from agents.llm.base import StreamResult
from agents.reply_stream import ReplyStream


def _reply(stored: list[str], ended: list[str]) -> ReplyStream:
    def deltas() -> Iterator[str]:
        yield "The tide "
        yield "is high."

    reply = ReplyStream(deltas(), StreamResult(), lambda text: stored.append(text) or None)
    reply.on_finish.append(lambda _reply, outcome: ended.append(outcome))
    return reply


def test_a_sync_reader_that_stops_early_keeps_what_arrived() -> None:
    # No event loop here (a script, a worker thread): stopping early must still store the
    # text that arrived and tell the listeners (usage metering) it was cancelled.
    stored: list[str] = []
    ended: list[str] = []
    it = iter(_reply(stored, ended))
    assert next(it) == "The tide "
    it.close()  # type: ignore[attr-defined]
    assert (stored, ended) == (["The tide "], ["cancelled"])


def test_a_sync_reader_that_reads_to_the_end_stores_the_whole_reply() -> None:
    stored: list[str] = []
    ended: list[str] = []
    assert _reply(stored, ended).collect() == "The tide is high."
    assert (stored, ended) == (["The tide is high."], ["ok"])
