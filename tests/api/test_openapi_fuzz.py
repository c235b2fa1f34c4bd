"""Schemathesis over ``/openapi.json``: no input may get a 5xx or an answer that breaks the
document's own schema.

Every operation gets a bounded number of generated requests (``FUZZ_EXAMPLES`` each; raise it
with ``ANIMA_FUZZ_EXAMPLES`` for a deeper run). Path ids are swapped for a real agent,
conversation and job about half of the time, so the handlers behind the 404s are fuzzed too;
a third of the requests carry an API key of the wallet that owns the seeded agent, so the
handlers behind the key checks and the owner checks are fuzzed as well.
Replies come from a scripted model (the model is not what is under test; its cost would only
bound the number of cases); everything else is the real app on a temporary data directory.
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from agents.llm.base import StreamResult
from agents.llm.pool import LLMPool
from agents.schema import ChatMessage, GenerationSettings
from container import Services, build_services
from core.principal import SYSTEM, Principal
from core.settings import Settings
from tests.fake_backends import ScriptedBackend

FUZZ_EXAMPLES = int(os.environ.get("ANIMA_FUZZ_EXAMPLES", "12"))
CHECKS = [
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
    content_type_conformance,
]


class _ScriptedModel(ScriptedBackend):
    def stream(
        self,
        messages: list[ChatMessage],
        params: GenerationSettings,
        result: StreamResult | None = None,
    ) -> Iterator[str]:
        yield "Fine,"
        yield " thanks."


OWNER = Principal(address="0x00000000000000000000000000000000000F0220", via="session")


class _Seeds:
    """Real ids to put in paths; re-created when a fuzzed DELETE removed them. ``key``: an
    API key of the wallet that owns the seeded agent."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.ids: dict[str, str] = {}
        self.key = services.auth.create_api_key("fuzz", principal=OWNER).key
        self.refresh()

    def refresh(self) -> None:
        agents = self.services.agents
        if "agent_id" not in self.ids or not agents._exists(self.ids["agent_id"]):
            agent = agents.create_agent(
                {"name": "Fuzz", "first_mes": "Hi {{user}}"}, principal=OWNER, owner=OWNER.address
            )
            self.ids["agent_id"] = self.ids["model_id"] = agent.id
            self.ids.pop("conversation_id", None)
        try:
            self.services.chat.get_conversation(
                self.ids.get("conversation_id", "-"), principal=SYSTEM
            )
        except Exception:
            conv = self.services.chat.create_conversation(self.ids["agent_id"], principal=OWNER)
            self.ids["conversation_id"] = conv.id


@pytest.fixture
def fuzz_app(tmp_path: Any, embedder: Any) -> Iterator[tuple[Any, _Seeds]]:
    from app import create_app

    settings = Settings(data_dir=tmp_path / "data", llm_preload=False, allowed_hosts="*")
    # The shared embedder, loaded now: ``/v1/embeddings`` loading it on its first fuzzed call
    # would outlast the client's read timeout.
    embedder.embed_query("warm")
    services = build_services(
        settings, llm=LLMPool(settings, default=_ScriptedModel()), embedder=embedder
    )
    app = create_app(services=services)
    try:
        yield app, _Seeds(services)
    finally:
        services.close()


def test_no_input_gets_a_5xx_or_an_answer_outside_the_schema(
    fuzz_app: tuple[Any, _Seeds],
) -> None:
    app, seeds = fuzz_app
    api = schemathesis.openapi.from_asgi("/openapi.json", app)
    failures: list[str] = []
    operations = [result.ok() for result in api.get_all_operations()]
    assert len(operations) >= 15

    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=FUZZ_EXAMPLES,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            database=None,
            phases=[Phase.explicit, Phase.generate],  # no shrinking: report, move on
        )
        def run(case: Any) -> None:
            seeds.refresh()
            params = case.path_parameters or {}
            if hash(repr(case.body)) % 2 == 0:
                for name in params:
                    if name in seeds.ids:
                        params[name] = seeds.ids[name]
            # Decided by the case itself, so a failing case replays the same way.
            if zlib.crc32(repr((case.body, case.query, params)).encode()) % 3 == 0:
                case.headers = {**(case.headers or {}), "Authorization": f"Bearer {seeds.key}"}
            case.call_and_validate(checks=CHECKS)

        try:
            run()
        except (Exception, BaseExceptionGroup) as exc:  # schemathesis groups its failures
            failures.append(f"{operation.label}: {str(exc)[:1500]}")
    assert not failures, "\n\n".join(failures)
