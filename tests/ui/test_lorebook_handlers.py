"""The lorebook panel's pure parts and handlers, without a browser."""

from __future__ import annotations

from container import Services
from core.principal import SYSTEM
from ui.panels.lorebook import handlers
from ui.panels.lorebook.handlers import EDITOR, HEADERS, entry_rows, split_keys


def test_split_keys_keeps_a_regex_with_commas_whole() -> None:
    assert split_keys(" dragon, ,wyrm ") == ["dragon", "wyrm"]
    assert split_keys("/a{1,3}b/i, cave") == ["/a{1,3}b/i", "cave"]
    assert split_keys("/open, pattern") == ["/open, pattern"]  # never closed: kept as typed
    assert split_keys("") == [] and split_keys(None) == []


def test_handlers_edit_and_render_an_entry(services: Services) -> None:
    agent = services.agents.create_agent({"name": "Mira"}, principal=SYSTEM)
    empty = handlers.load(services, agent.id, "", principal=SYSTEM)
    assert empty["table"] == [] and "No entries yet" in empty["count"]
    added = handlers.add_entry(services, agent.id, "", principal=SYSTEM)
    assert added["index"] == 0 and len(added["table"]) == 1
    values = {**{k: added[k] for k in EDITOR}, "keys": "reef, /gulls?/i", "content": "x" * 200}
    values["secondary_keys"], values["selective_logic"] = "storm", 2
    saved = handlers.save_entry(
        services, agent.id, "", *[values[k] for k in EDITOR], principal=SYSTEM
    )
    assert saved["status"] == "Saved entry #0."
    row = dict(zip(HEADERS, saved["table"][0], strict=True))
    assert row["Keys"] == "reef, /gulls?/i" and row["Secondary"] == "storm"
    assert row["Logic"] == "NOT ANY" and row["Regex"] == "✓"
    assert len(row["Content"]) == 80 and row["Content"].endswith("…")

    bad = {**values, "keys": "/(a)\\1/"}
    refused = handlers.save_entry(
        services, agent.id, "", *[bad[k] for k in EDITOR], principal=SYSTEM
    )
    assert "RE2" in refused["status"] and "keys" not in refused  # the form keeps its text
    out_of_range = {**values, "probability": 300}
    assert (
        "probability"
        in handlers.save_entry(
            services, agent.id, "", *[out_of_range[k] for k in EDITOR], principal=SYSTEM
        )["status"]
    )
    found = handlers.search(services, agent.id, "GULL", principal=SYSTEM)
    assert found["count"] == "1 of 1 entries match." and len(found["table"]) == 1
    assert handlers.search(services, agent.id, "zebra", principal=SYSTEM)["table"] == []
    off = handlers.set_enabled(services, agent.id, "", [0], False, principal=SYSTEM)
    assert off["table"][0][1] == "" and entry_rows([]) == []
