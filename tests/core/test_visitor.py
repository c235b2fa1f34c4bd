"""The signed visitor cookie: one key per install, and nothing but a signed id is an identity."""

from __future__ import annotations

import stat
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from core.visitor import VisitorIds


def test_processes_starting_together_share_one_private_key(tmp_path: Path) -> None:
    with ThreadPoolExecutor(8) as pool:
        signers = list(pool.map(lambda _: VisitorIds(tmp_path), range(16)))
    visitor_id, cookie = signers[0].new()
    assert [s.verify(cookie) for s in signers] == [visitor_id] * 16
    assert [p.name for p in tmp_path.iterdir()] == ["visitor.key"]  # no temporary file left
    assert stat.S_IMODE((tmp_path / "visitor.key").stat().st_mode) == 0o600
    # A restart reads the same key: cookies issued before still hold.
    assert VisitorIds(tmp_path).verify(cookie) == visitor_id


def test_only_a_cookie_this_install_signed_is_an_identity(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    ours, theirs = VisitorIds(tmp_path / "a"), VisitorIds(tmp_path / "b")
    visitor_id, cookie = ours.new()
    other_id = ours.new()[0]
    assert visitor_id != other_id and ours.verify(cookie) == visitor_id
    signature = cookie.partition(".")[2]
    for forged in [
        theirs.new()[1],  # signed by another install
        f"{other_id}.{signature}",  # someone else's id under this signature
        cookie[:-1] + ("A" if cookie[-1] != "A" else "B"),
        visitor_id,
        f"{visitor_id}.",
        f"{visitor_id}.{signature}.x",
        "",
        None,
    ]:
        assert ours.verify(forged) is None, forged
