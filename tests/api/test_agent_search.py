"""``GET /api/agents`` searches, filters, sorts and pages in SQL, and never shows more than the
caller may see: public agents and the caller's own.

Olga (signed in) owns a public, a private and an unlisted agent; a few public agents belong to
nobody. A stranger and an anonymous caller ask the same questions and get less.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from agents.agent_search import AgentQuery
from container import Services, build_services
from core.errors import ValidationError
from core.principal import SYSTEM, Principal
from core.settings import Settings
from tests.chain.helpers import fast_settings, new_wallet, sign_in

# name, tags, visibility; owned by Olga when the visibility is not None, else by nobody.
OLGA_AGENTS = [
    ("Aria", ["Fantasy", "Elf"], "public"),
    ("Émile", ["poet"], "private"),
    ("Quill", ["elfish"], "unlisted"),
]
NOBODYS = [
    ("Bram", ["tavern", "Fantasy"]),
    ("cleo", ["sci-fi"]),
    ("100% Zed", []),
    ("Dora", ["elf"]),
]


@pytest.fixture(scope="module")
def search_services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services]:
    settings = fast_settings(tmp_path_factory.mktemp("search"), chain_mint_on_create=False)
    svc = build_services(settings)
    svc.chain.start(follow=False)
    yield svc
    svc.close()


@pytest.fixture(scope="module")
def app(search_services: Services) -> FastAPI:
    from app import create_app

    return create_app(services=search_services)


@pytest.fixture(scope="module")
def world(app: FastAPI, search_services: Services) -> dict[str, Any]:
    olga = TestClient(app)
    wallet = new_wallet()
    sign_in(olga, wallet)
    ids: dict[str, str] = {}
    for name, tags in NOBODYS[:2]:
        ids[name] = search_services.agents.create_agent(
            {"name": name, "tags": tags}, principal=SYSTEM
        ).id
    for name, tags, visibility in OLGA_AGENTS:
        made = olga.post("/api/agents", json={"name": name, "tags": tags, "visibility": visibility})
        assert made.status_code == 201, made.text
        ids[name] = made.json()["id"]
    for name, tags in NOBODYS[2:]:
        ids[name] = search_services.agents.create_agent(
            {"name": name, "tags": tags}, principal=SYSTEM
        ).id
    stranger = TestClient(app)
    sign_in(stranger, new_wallet())
    return {
        "olga": olga,
        "address": wallet.address,
        "stranger": stranger,
        "anonymous": TestClient(app),
        "ids": ids,
    }


def _names(client: TestClient, **params: Any) -> list[str]:
    answer = client.get("/api/agents", params=params)
    assert answer.status_code == 200, answer.text
    names = [a["name"] for a in answer.json()]
    assert int(answer.headers["X-Total-Count"]) >= len(names)
    return names


def test_without_parameters_the_list_is_as_before(world: dict[str, Any]) -> None:
    answer = world["anonymous"].get("/api/agents")
    assert answer.status_code == 200
    assert [a["name"] for a in answer.json()] == ["Bram", "cleo", "Aria", "100% Zed", "Dora"]
    assert answer.headers["X-Total-Count"] == "5"
    assert "X-Next-Offset" not in answer.headers
    # Olga also sees her private and unlisted agents, in creation order.
    assert _names(world["olga"]) == ["Bram", "cleo", "Aria", "Émile", "Quill", "100% Zed", "Dora"]


def test_search_matches_name_or_tag_in_any_case(world: dict[str, Any]) -> None:
    anonymous = world["anonymous"]
    assert _names(anonymous, q="CLE") == ["cleo"]
    assert _names(anonymous, q="fanta") == ["Bram", "Aria"]  # by tag
    assert _names(anonymous, q="elf") == ["Aria", "Dora"]
    assert _names(anonymous, q="  ari ") == ["Aria"]
    assert _names(world["olga"], q="émile") == ["Émile"]  # beyond ASCII, on SQLite too
    assert _names(world["olga"], q="ÉMILE") == ["Émile"]
    assert _names(world["olga"], q="emile") == ["Émile"]  # accents are not needed
    assert _names(anonymous, q="émile") == []  # private: not even found
    # LIKE's wildcards are plain characters here.
    assert _names(anonymous, q="%") == ["100% Zed"]
    assert _names(anonymous, q="_") == []
    assert _names(anonymous, q="nothing like it") == []


def test_tag_filter_matches_whole_tags(world: dict[str, Any]) -> None:
    assert _names(world["olga"], tag="ELF") == ["Aria", "Dora"]  # not "elfish"
    assert _names(world["olga"], tag="elfish") == ["Quill"]
    assert _names(world["anonymous"], tag="elfish") == []  # unlisted is never listed to others
    assert _names(world["anonymous"], tag="fantasy", q="bra") == ["Bram"]


def test_owner_filter(world: dict[str, Any]) -> None:
    address = world["address"]
    assert _names(world["olga"], owner="me") == ["Aria", "Émile", "Quill"]
    assert _names(world["olga"], owner=address.lower()) == ["Aria", "Émile", "Quill"]
    assert _names(world["stranger"], owner=address) == ["Aria"]
    assert _names(world["stranger"], owner="me") == []
    answer = world["anonymous"].get("/api/agents", params={"owner": "me"})
    assert answer.status_code == 200 and answer.json() == []
    assert answer.headers["X-Total-Count"] == "0"


def test_sorts(world: dict[str, Any], search_services: Services) -> None:
    olga = world["olga"]
    by_name = ["100% Zed", "Aria", "Bram", "cleo", "Dora", "Émile", "Quill"]
    assert _names(olga, sort="name") == by_name
    assert _names(olga, sort="recent")[0] == "Dora"
    changed = olga.patch(f"/api/agents/{world['ids']['Aria']}", json={"personality": "bright"})
    assert changed.status_code == 200, changed.text
    assert _names(olga, sort="recent")[:2] == ["Aria", "Dora"]
    assert _names(olga, sort="recent", tag="fantasy") == ["Aria", "Bram"]


def test_pages_cover_every_match_once(world: dict[str, Any]) -> None:
    olga, seen, offset = world["olga"], [], 0
    while True:
        answer = olga.get("/api/agents", params={"limit": 3, "offset": offset, "sort": "name"})
        assert answer.status_code == 200
        assert answer.headers["X-Total-Count"] == "7"
        seen += [a["name"] for a in answer.json()]
        if "X-Next-Offset" not in answer.headers:
            break
        offset = int(answer.headers["X-Next-Offset"])
    assert seen == _names(olga, sort="name")
    assert len(seen) == 7
    past_the_end = olga.get("/api/agents", params={"offset": 50})
    assert past_the_end.status_code == 200 and past_the_end.json() == []


@pytest.mark.parametrize(
    ("params", "says"),
    [
        ({"sort": "newest"}, "sort"),
        ({"owner": "olga"}, "owner must be a wallet address"),
        ({"owner": "0x1234"}, "owner must be a wallet address"),
        ({"limit": 0}, "limit"),
        ({"limit": 501}, "limit"),
        ({"offset": -1}, "offset"),
        ({"q": "x" * 201}, "q"),
        ({"tag": "x" * 201}, "tag"),
    ],
)
def test_bad_parameters_are_a_422_that_names_them(
    world: dict[str, Any], params: dict[str, Any], says: str
) -> None:
    answer = world["olga"].get("/api/agents", params=params)
    assert answer.status_code == 422, answer.text
    assert says in answer.json()["error"]["message"]


def test_the_service_checks_its_query_too(search_services: Services) -> None:
    agents = search_services.agents
    for bad in (
        AgentQuery(sort="newest"),
        AgentQuery(owner="nobody"),
        AgentQuery(limit=0),
        AgentQuery(offset=-2),
        AgentQuery(q="x" * 300),
    ):
        with pytest.raises(ValidationError):
            agents.search_agents(bad, principal=SYSTEM)
    page = agents.search_agents(AgentQuery(limit=2, sort="name"), principal=Principal(None))
    assert [a.name for a in page.agents] == ["100% Zed", "Aria"]
    assert (page.total, page.next_offset) == (5, 2)


def test_visible_tags_count_what_the_caller_may_see(
    world: dict[str, Any], search_services: Services
) -> None:
    anonymous = dict(search_services.agents.visible_tags(principal=Principal(None)))
    assert anonymous == {"fantasy": 2, "elf": 2, "tavern": 1, "sci-fi": 1}
    olga = Principal(world["address"])
    assert dict(search_services.agents.visible_tags(principal=olga))["poet"] == 1


def test_renaming_and_retagging_update_the_search(world: dict[str, Any]) -> None:
    olga, agent_id = world["olga"], world["ids"]["Quill"]
    changed = olga.patch(f"/api/agents/{agent_id}", json={"name": "Quillon", "tags": ["Bard"]})
    assert changed.status_code == 200, changed.text
    assert _names(olga, q="quillon") == ["Quillon"]
    assert _names(olga, tag="bard") == ["Quillon"]
    assert _names(olga, tag="elfish") == []


def test_picker_names_are_the_listed_agents_oldest_first(
    world: dict[str, Any], search_services: Services
) -> None:
    agents = search_services.agents
    anonymous = agents.visible_names(principal=Principal(None))
    assert [name for _, name in anonymous] == _names(world["anonymous"])
    assert anonymous[0] == (world["ids"]["Bram"], "Bram")
    olga = agents.visible_names(principal=Principal(world["address"]))
    assert [name for _, name in olga] == _names(world["olga"])
    assert len(olga) == len(anonymous) + 2  # her private and unlisted agents


def test_the_same_search_on_postgres(postgres_database: str, tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, database_url=postgres_database, llm_preload=False)
    services = build_services(settings)
    try:
        agents = services.agents
        for name, tags in [("Émile", ["Poet"]), ("100% Zed", ["elfish"]), ("Dora", ["elf"])]:
            agents.create_agent({"name": name, "tags": tags}, principal=SYSTEM)

        def names(**query: Any) -> list[str]:
            page = agents.search_agents(AgentQuery(**query), principal=Principal(None))
            return [a.name for a in page.agents]

        assert names(q="EMILE") == ["Émile"]
        assert names(q="%") == ["100% Zed"]
        assert names(q="_") == []
        assert names(q="em\x00ile\n") == []  # control characters are spaces, not a 500
        assert names(q="\x00émile") == ["Émile"]
        assert names(tag="elf") == ["Dora"]
        assert names(q="elf", sort="name") == ["100% Zed", "Dora"]
        assert names(sort="recent") == ["Dora", "100% Zed", "Émile"]
        assert agents.visible_tags(principal=Principal(None))[0] == ("elf", 1)
    finally:
        services.close()
