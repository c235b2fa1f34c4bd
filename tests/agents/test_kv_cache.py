"""The warmed-prefix store on its own: checksums, the cap, and what deleting takes with it.

The files here stand in for llama.cpp's slot files (the store never reads inside them);
``test_persona_warming`` runs the real engine.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from agents.llm.kv_cache import KVStore, entry_name


def _put(
    store: KVStore,
    tokens: list[int],
    *,
    size: int = 1000,
    agent: str | None = "a1",
    adapter: str | None = None,
):
    temp = store.temp_name()
    (store.folder / temp).write_bytes(os.urandom(size))
    return store.commit(
        temp,
        model="m",
        adapter=adapter,
        adapter_id=f"{adapter}:1" if adapter else None,
        tokens=tokens,
        agent_id=agent,
    )


def test_key_covers_model_adapter_and_tokens(tmp_path: Path) -> None:
    names = {
        entry_name("m", None, [1, 2, 3]),
        entry_name("m2", None, [1, 2, 3]),
        entry_name("m", "ad:1", [1, 2, 3]),
        entry_name("m", None, [1, 2, 4]),
    }
    assert len(names) == 4


def test_best_takes_the_longest_shared_prefix_of_the_same_model_and_adapter(
    tmp_path: Path,
) -> None:
    store = KVStore(tmp_path, cap_mb=10)
    short = _put(store, [1, 2, 3, 4])
    long = _put(store, [1, 2, 3, 4, 5, 6, 7])
    _put(store, [1, 2, 3, 4, 5, 6, 7, 8], adapter="/x")  # another adapter: never offered
    found = store.best("m", None, [1, 2, 3, 4, 5, 6, 9, 9], at_least=2)
    assert found is not None and found[0].name == long.name and found[1] == 6
    assert store.best("m", None, [1, 2, 3, 4, 5, 6, 9, 9], at_least=6) is None
    assert store.best("other", None, [1, 2, 3, 4], at_least=0) is None
    assert store.find("m", None, [1, 2, 3, 4]) == short


def test_a_corrupt_or_truncated_file_is_never_offered_and_is_removed(tmp_path: Path) -> None:
    store = KVStore(tmp_path, cap_mb=10)
    flipped = _put(store, [1, 2, 3])
    truncated = _put(store, [5, 6, 7])
    path = store.path(flipped)
    data = bytearray(path.read_bytes())
    data[10] ^= 0xFF
    path.write_bytes(bytes(data))
    with store.path(truncated).open("r+b") as f:
        f.truncate(500)
    fresh = KVStore(tmp_path, cap_mb=10)  # a restart: nothing verified yet
    assert fresh.find("m", None, [1, 2, 3]) is None
    assert fresh.best("m", None, [5, 6, 7, 8], at_least=0) is None
    assert not path.exists() and not store.path(truncated).exists()
    assert fresh.entries() == []


def test_a_file_without_its_sidecar_or_with_a_broken_one_is_removed(tmp_path: Path) -> None:
    store = KVStore(tmp_path, cap_mb=10)
    entry = _put(store, [1, 2, 3])
    sidecar = tmp_path / f"{entry.name}.json"
    record = json.loads(sidecar.read_text())
    record["tokens"] = [9, 9, 9]  # no longer the prefix its hash names
    sidecar.write_text(json.dumps(record))
    orphan = tmp_path / ("f" * 40 + ".bin")
    orphan.write_bytes(b"x" * 10)
    fresh = KVStore(tmp_path, cap_mb=10)
    assert fresh.entries() == []
    fresh.evict()
    assert not orphan.exists() and not store.path(entry).exists()


def test_the_cap_evicts_the_least_recently_used(tmp_path: Path) -> None:
    store = KVStore(tmp_path, cap_mb=3000 / (1024 * 1024))  # room for three 1000-byte files
    first = _put(store, [1, 1])
    second = _put(store, [2, 2])
    third = _put(store, [3, 3])
    old = 1_000_000_000
    for i, entry in enumerate((first, second, third)):
        os.utime(tmp_path / f"{entry.name}.json", (old + i, old + i))
    assert store.best("m", None, [1, 1, 5], at_least=0) is not None  # first is used again
    _put(store, [4, 4])
    names = {e.name for e in store.entries()}
    assert names == {first.name, third.name, entry_name("m", None, [4, 4])}
    assert not store.path(second).exists()
    assert store.total_bytes() <= store.cap_bytes


def test_deleting_an_agent_keeps_what_another_agent_uses(tmp_path: Path) -> None:
    store = KVStore(tmp_path, cap_mb=10)
    shared = _put(store, [1, 2], agent="a1")
    store.tag(shared, "a2")
    own = _put(store, [3, 4], agent="a1")
    assert store.delete_agent("a1") == 1
    assert not store.path(own).exists()
    kept = store.find("m", None, [1, 2])
    assert kept is not None and kept.agents == ("a2",)
    assert store.delete_agent("a2") == 1
    assert store.entries() == [] and list(tmp_path.glob("*.bin")) == []


def test_a_new_prefix_of_an_agent_replaces_its_old_one(tmp_path: Path) -> None:
    store = KVStore(tmp_path, cap_mb=10)
    old = _put(store, [1, 2], agent="a1")
    new = _put(store, [1, 3], agent="a1")
    assert old.name != new.name
    assert store.untag_others("a1", keep=new.name) == 1
    assert [e.name for e in store.entries()] == [new.name]


def test_deleting_an_adapter_deletes_what_was_computed_under_it(tmp_path: Path) -> None:
    store = KVStore(tmp_path, cap_mb=10)
    under = _put(store, [1, 2], adapter="/adapters/v1")
    base = _put(store, [1, 2])
    assert store.delete_adapter("/adapters/v1") == 1
    assert not store.path(under).exists() and store.path(base).exists()
