"""The official ``openai`` package against Anima's ``/v1`` on a real server."""

from __future__ import annotations

import openai
import pytest

from container import Services
from core.principal import SYSTEM

pytestmark = pytest.mark.model


def _client(base: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{base}/v1", api_key="unused", max_retries=0, timeout=120)


def test_models_list_and_streamed_completion(live_server: str, services: Services) -> None:
    one = services.agents.create_agent(
        {"name": "Bram", "description": "A grumpy baker."}, principal=SYSTEM
    )
    two = services.agents.create_agent(
        {"name": "Tilde", "description": "A cheerful sailor."}, principal=SYSTEM
    )
    client = _client(live_server)

    models = client.models.list()
    assert {m.id for m in models.data} == {one.id, two.id}
    assert client.models.retrieve(one.id).id == one.id

    stream = client.chat.completions.create(
        model=one.id,
        messages=[{"role": "user", "content": "What bread do you bake?"}],
        stream=True,
        max_tokens=12,
        temperature=0,
        stream_options={"include_usage": True},
    )
    pieces, finish, usage = [], None, None
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            if choice.delta.content:
                pieces.append(choice.delta.content)
            finish = choice.finish_reason or finish
    assert len(pieces) >= 2
    assert "".join(pieces).strip()
    assert finish in {"stop", "length"}
    assert usage is not None and 0 < usage.completion_tokens <= 12

    whole = client.chat.completions.create(
        model=one.id,
        messages=[
            {"role": "system", "content": "Answer in one short sentence."},
            {"role": "user", "content": "What bread do you bake?"},
        ],
        max_tokens=12,
        temperature=0,
    )
    assert whole.choices[0].message.content.strip()
    assert whole.usage.prompt_tokens > 0
    # Stateless: nothing was stored as a conversation.
    assert services.chat.list_conversations(one.id, principal=SYSTEM) == []


def test_unknown_model_and_bad_request(live_server: str) -> None:
    client = _client(live_server)
    with pytest.raises(openai.NotFoundError, match="no agent"):
        client.chat.completions.create(
            model="missing", messages=[{"role": "user", "content": "hi"}]
        )
    with pytest.raises(openai.UnprocessableEntityError):
        client.chat.completions.create(model="missing", messages=[])
