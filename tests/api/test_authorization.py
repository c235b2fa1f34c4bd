"""Authorization inside the services, checked from the outside.

Two guards: a walk over every route of the app (all routers, nested ones too) that fails for a
route that does not take the caller (``api.deps.caller`` through ``Caller`` or ``AgentOwner``)
unless ``api.deps.PUBLIC_ROUTES`` says why it is public; and the jobs rule in action: a job
belongs to the wallet that submitted it and to the owner of its target, nobody else.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from eth_account.signers.local import LocalAccount
from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

import tests.core.jobs_kinds  # noqa: F401  (registers the slow test job kind)
from agents.llm.pool import LLMPool
from api.deps import PUBLIC_ROUTES, Caller, caller
from container import Services, build_services
from core.jobs import JobView
from core.principal import SYSTEM
from tests.chain.helpers import fast_settings, new_wallet, sign_in, wait_job


@dataclass(frozen=True)
class _Endpoint:
    path: str
    methods: set[str]
    dependant: Dependant


def _dependencies(endpoint: _Endpoint) -> set[Any]:
    found, stack = set(), list(endpoint.dependant.dependencies)
    while stack:
        dep = stack.pop()
        found.add(dep.call)
        stack.extend(dep.dependencies)
    return found


def _endpoints(routes: list[Any]) -> list[_Endpoint]:
    """Every API endpoint, also inside included (and nested) routers, with its full path and
    the dependencies it runs with, those its routers were included with too."""
    found: list[_Endpoint] = []
    for route in routes:
        if hasattr(route, "effective_candidates"):  # a router included by another
            found += _endpoints(route.effective_candidates())
        elif isinstance(route, APIRoute) or isinstance(
            getattr(route, "original_route", None), APIRoute
        ):
            found.append(_Endpoint(route.path, set(route.methods), route.dependant))
    return found


def _route_keys(app: FastAPI) -> dict[str, _Endpoint]:
    return {f"{m} {e.path}": e for e in _endpoints(app.routes) for m in sorted(e.methods)}


def _without_caller(app: FastAPI, allowed: set[str]) -> list[str]:
    """The routes of ``app`` that neither take the caller nor are in ``allowed``."""
    return sorted(
        key
        for key, route in _route_keys(app).items()
        if key not in allowed and caller not in _dependencies(route)
    )


# ----- fixtures: one app on eth-tester for the module ------------------------------------------


@pytest.fixture(scope="module")
def authz_services(
    tmp_path_factory: pytest.TempPathFactory, llm_pool: LLMPool
) -> Iterator[Services]:
    svc = build_services(fast_settings(tmp_path_factory.mktemp("authz-data")), llm=llm_pool)
    svc.chain.start(follow=False)
    yield svc
    svc.close()


@pytest.fixture(scope="module")
def authz_app(authz_services: Services) -> FastAPI:
    from app import create_app

    return create_app(services=authz_services)


# ----- the route walk --------------------------------------------------------------------------


def test_every_route_takes_the_caller_unless_it_is_listed_as_public(authz_app: FastAPI) -> None:
    keys = _route_keys(authz_app)
    assert len(keys) >= 70, f"the route walk no longer finds the app's routes: {len(keys)}"
    assert "POST /api/jobs/{job_id}/cancel" in keys and "GET /v1/models" in keys

    unguarded = _without_caller(authz_app, set(PUBLIC_ROUTES))
    assert unguarded == [], (
        "routes that neither take the caller (principal: Caller, or AgentOwner) nor are listed "
        f"in api.deps.PUBLIC_ROUTES: {unguarded}"
    )
    assert [key for key in PUBLIC_ROUTES if key not in keys] == [], (
        "listed routes that do not exist"
    )
    assert all(reason.strip() for reason in PUBLIC_ROUTES.values())


def test_the_walk_finds_an_unguarded_route_in_a_nested_router() -> None:
    from fastapi import APIRouter, Depends

    inner, outer = APIRouter(prefix="/inner"), APIRouter(prefix="/api")

    @inner.post("/things")
    def make_thing() -> None: ...

    @inner.delete("/things/{thing_id}")
    def delete_thing(principal: Caller, thing_id: str) -> None: ...

    @inner.put("/things/{thing_id}")
    def put_thing() -> None: ...

    guarded = APIRouter(prefix="/guarded")

    @guarded.post("/things")
    def make_guarded() -> None: ...

    outer.include_router(inner)
    outer.include_router(guarded, dependencies=[Depends(caller)])
    app = FastAPI()
    app.include_router(outer)
    found = _without_caller(app, set())
    assert found == ["POST /api/inner/things", "PUT /api/inner/things/{thing_id}"]
    assert _without_caller(app, set(found)) == []


# ----- jobs belong to their submitter and to their target's owner ------------------------------


def _client(app: FastAPI, wallet: LocalAccount | None = None) -> TestClient:
    client = TestClient(app)
    if wallet is not None:
        sign_in(client, wallet)
    return client


def _listed(client: TestClient) -> set[str]:
    response = client.get("/api/jobs", params={"limit": 500})
    assert response.status_code == 200, response.text
    return {job["id"] for job in response.json()}


def _slow_job(services: Services, tmp: Any, **where: Any) -> JobView:
    """A job that runs for a while (so cancelling it means something)."""
    return services.jobs.submit(
        "test.steps", {"log": str(tmp / "slow.log"), "n": 400, "seconds": 0.05}, **where
    )


def test_a_stranger_can_neither_list_nor_read_nor_cancel_someone_elses_jobs(
    authz_app: FastAPI, authz_services: Services, tmp_path: Any
) -> None:
    alice, bob, carol = new_wallet(), new_wallet(), new_wallet()
    as_alice, as_bob = _client(authz_app, alice), _client(authz_app, bob)
    as_carol, anon = _client(authz_app, carol), _client(authz_app)

    # Alice creates an agent: the app mints it to her in a job she submitted.
    created = as_alice.post("/api/agents", json={"name": "Alice's"})
    assert created.status_code == 201, created.text
    mint = authz_services.chain.mint_job(created.json()["id"])
    assert mint is not None and mint.owner == alice.address
    assert wait_job(authz_services, mint.id).status == "succeeded"
    # Carol's agent; Alice starts a slow job on it (Carol owns the target, Alice submitted it).
    carols = as_carol.post("/api/agents", json={"name": "Carol's"}).json()
    on_carols = _slow_job(
        authz_services, tmp_path, owner=alice.address, target_type="agent", target_id=carols["id"]
    )
    # Bob has a job of his own, so his list is not empty for want of jobs.
    bobs = as_bob.post("/api/agents", json={"name": "Bob's"}).json()
    bobs_mint = authz_services.chain.mint_job(bobs["id"])
    assert bobs_mint is not None

    alices_jobs = {mint.id, on_carols.id}
    assert alices_jobs <= _listed(as_alice)
    bob_sees = _listed(as_bob)
    assert bobs_mint.id in bob_sees and not bob_sees & alices_jobs
    assert on_carols.id in _listed(as_carol) and mint.id not in _listed(as_carol)
    everything = {v.id for v in authz_services.jobs.list(limit=500, principal=SYSTEM)}
    assert alices_jobs | {bobs_mint.id} <= everything

    for job_id in sorted(alices_jobs):
        for who, status in ((as_bob, 403), (anon, 401)):
            assert who.get(f"/api/jobs/{job_id}").status_code == status
            assert who.get(f"/api/jobs/{job_id}/events").status_code == status
            refused = who.post(f"/api/jobs/{job_id}/cancel")
            assert refused.status_code == status, refused.text
        assert as_alice.get(f"/api/jobs/{job_id}").status_code == 200
    error = as_bob.post(f"/api/jobs/{on_carols.id}/cancel").json()["error"]
    assert error["type"] == "NotOwnerError" and bob.address in error["message"]
    assert authz_services.jobs.get(on_carols.id, principal=SYSTEM).status in {"queued", "running"}
    assert authz_services.jobs.get(mint.id, principal=SYSTEM).status == "succeeded"

    # The target's owner may follow and stop a job someone else started on her agent.
    assert as_carol.get(f"/api/jobs/{on_carols.id}").status_code == 200
    stopped = as_carol.post(f"/api/jobs/{on_carols.id}/cancel")
    assert stopped.status_code == 200 and stopped.json()["status"] == "cancelled"
    assert as_carol.get(f"/api/jobs/{mint.id}").status_code == 403  # not her agent's job
    # And the submitter may stop her own.
    second = _slow_job(
        authz_services, tmp_path, owner=alice.address, target_type="agent", target_id=carols["id"]
    )
    assert as_bob.post(f"/api/jobs/{second.id}/cancel").status_code == 403
    mine = as_alice.post(f"/api/jobs/{second.id}/cancel")
    assert mine.status_code == 200 and mine.json()["status"] == "cancelled"


def test_a_knowledge_base_job_belongs_to_the_bases_owner(
    authz_app: FastAPI, authz_services: Services, tmp_path: Any
) -> None:
    alice, bob = new_wallet(), new_wallet()
    as_alice, as_bob = _client(authz_app, alice), _client(authz_app, bob)
    base = as_alice.post("/api/knowledge-bases", json={"name": "Alice's notes"})
    assert base.status_code == 201, base.text
    # Submitted without an owner, as the knowledge service does: the base decides.
    job = _slow_job(
        authz_services, tmp_path, target_type="knowledge_base", target_id=base.json()["id"]
    )
    assert job.id in _listed(as_alice) and job.id not in _listed(as_bob)
    assert as_bob.get(f"/api/jobs/{job.id}").status_code == 403
    assert as_bob.post(f"/api/jobs/{job.id}/cancel").status_code == 403
    assert authz_services.jobs.get(job.id, principal=SYSTEM).status in {"queued", "running"}
    assert as_alice.post(f"/api/jobs/{job.id}/cancel").json()["status"] == "cancelled"


def test_anonymous_jobs_on_anonymous_drafts_stay_open(
    authz_app: FastAPI, authz_services: Services, tmp_path: Any
) -> None:
    anon, other = _client(authz_app), _client(authz_app)
    draft = anon.post("/api/agents", json={"name": "Draft"}).json()
    assert draft["owner_address"] is None
    job = _slow_job(authz_services, tmp_path, target_type="agent", target_id=draft["id"])
    assert job.id in _listed(anon) and job.id in _listed(other)
    assert other.get(f"/api/jobs/{job.id}").status_code == 200
    assert anon.post(f"/api/jobs/{job.id}/cancel").json()["status"] == "cancelled"
