"""OpenAI parity on ``/v1`` with the ``openai`` package (sync, async, streaming) and LangChain,
on the bundled model served by the llama.cpp engine."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import struct
from pathlib import Path
from typing import Any, Literal

import httpx
import jsonschema
import openai
import pytest
from pydantic import BaseModel

from agents.llm.options import ParameterError, with_options
from agents.schema import GenerationSettings
from api.openai_models import OpenAIMessage, chat_messages
from container import Services
from core.principal import SYSTEM

pytestmark = pytest.mark.model

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "maxLength": 20}},
            "required": ["city"],
            "additionalProperties": False,
        },
    },
}
ASK = [{"role": "user", "content": "What is the weather in Paris?"}]


def _client(base: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{base}/v1", api_key="unused", max_retries=0, timeout=120)


@pytest.fixture
def agent(services: Services) -> str:
    return services.agents.create_agent(
        {"name": "Bram", "description": "A grumpy baker."}, principal=SYSTEM
    ).id


def test_n_choices_plain_and_streamed(live_server: str, agent: str) -> None:
    client = _client(live_server)
    whole = client.chat.completions.create(
        model=agent, messages=ASK, n=3, max_tokens=4, temperature=1.0, seed=1
    )
    assert [c.index for c in whole.choices] == [0, 1, 2]
    assert all(c.message.content for c in whole.choices)
    assert 3 <= whole.usage.completion_tokens <= 12  # the choices' tokens, summed
    texts: dict[int, str] = {}
    finishes: dict[int, str] = {}
    usage = None
    for chunk in client.chat.completions.create(
        model=agent,
        messages=ASK,
        n=3,
        max_tokens=4,
        stream=True,
        stream_options={"include_usage": True},
    ):
        if chunk.usage is not None:
            assert chunk.choices == []  # the usage chunk comes last, with no choices
            usage = chunk.usage
        for choice in chunk.choices:
            texts[choice.index] = texts.get(choice.index, "") + (choice.delta.content or "")
            if choice.finish_reason:
                finishes[choice.index] = choice.finish_reason
    assert set(texts) == {0, 1, 2} and set(finishes) == {0, 1, 2}
    assert usage is not None and 3 <= usage.completion_tokens <= 12


def test_seed_reproduces_the_sample(live_server: str, agent: str) -> None:
    client = _client(live_server)

    def sample(seed: int) -> str:
        reply = client.chat.completions.create(
            model=agent, messages=ASK, max_tokens=12, temperature=1.5, seed=seed
        )
        return reply.choices[0].message.content or ""

    first = sample(7)
    assert first and sample(7) == first
    assert len({first, sample(8), sample(9)}) > 1  # the seed is what made them equal


def test_logprobs_plain_and_streamed(live_server: str, agent: str) -> None:
    client = _client(live_server)
    reply = client.chat.completions.create(
        model=agent, messages=ASK, max_tokens=5, temperature=0, logprobs=True, top_logprobs=3
    )
    content = reply.choices[0].logprobs.content
    assert content and len(content) <= 5
    for entry in content:
        assert entry.logprob <= 0 and entry.bytes
        assert len(entry.top_logprobs) == 3
        assert all(t.logprob <= 0 for t in entry.top_logprobs)
        # Greedy: the chosen token is the likeliest one.
        assert entry.logprob == pytest.approx(entry.top_logprobs[0].logprob)
    assert "".join(e.token for e in content).strip() in reply.choices[0].message.content.strip()

    streamed = []
    for chunk in client.chat.completions.create(
        model=agent, messages=ASK, max_tokens=5, temperature=0, logprobs=True, stream=True
    ):
        for choice in chunk.choices:
            if choice.logprobs and choice.logprobs.content:
                streamed.extend(choice.logprobs.content)
    assert [e.token for e in streamed] == [e.token for e in content]
    assert all(e.top_logprobs == [] for e in streamed)  # top_logprobs not asked for


def test_logit_bias_and_penalties_change_the_output(
    live_server: str, agent: str, services: Services
) -> None:
    client = _client(live_server)
    plain = client.chat.completions.create(
        model=agent, messages=ASK, max_tokens=30, temperature=0, logprobs=True
    )
    first = plain.choices[0].logprobs.content[0].token
    engine = services.llm.get().backend.engine
    ids = engine._tokenizer.encode(first, add_special_tokens=False)
    assert len(ids) == 1
    banned = client.chat.completions.create(
        model=agent,
        messages=ASK,
        max_tokens=3,
        temperature=0,
        logprobs=True,
        logit_bias={str(ids[0]): -100},
    )
    assert banned.choices[0].logprobs.content[0].token != first

    def sample(**penalties: float) -> str:
        reply = client.chat.completions.create(
            model=agent, messages=ASK, max_tokens=30, temperature=0.7, seed=3, **penalties
        )
        return reply.choices[0].message.content or ""

    unpenalised = sample()
    assert sample() == unpenalised  # the seed alone keeps it; the penalties change it
    assert sample(presence_penalty=2.0, frequency_penalty=2.0) != unpenalised


class Loaf(BaseModel):
    name: str
    grams: int


LOAF_SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 12},
        "grams": {"type": "integer", "minimum": 100, "maximum": 999},
    },
    "required": ["name", "grams"],
    "additionalProperties": False,
}


def test_json_object_and_json_schema(live_server: str, agent: str) -> None:
    client = _client(live_server)
    ask = [{"role": "user", "content": "Describe your best loaf as JSON."}]
    obj = client.chat.completions.create(
        model=agent,
        messages=ask,
        max_tokens=60,
        temperature=0,
        response_format={"type": "json_object"},
        # A tiny model would ramble on in an open object: keep it short by a stop-free cap
        logit_bias=None,
    )
    text = obj.choices[0].message.content
    if obj.choices[0].finish_reason == "stop":
        assert isinstance(json.loads(text), dict)
    else:  # cut by max_tokens: still a JSON object's beginning
        assert text.lstrip().startswith("{")
    for seed in (1, 2, 3):
        reply = client.chat.completions.create(
            model=agent,
            messages=ask,
            max_tokens=60,
            temperature=1.0,
            seed=seed,
            response_format={
                "type": "json_schema",
                "json_schema": {"name": "loaf", "schema": LOAF_SCHEMA, "strict": True},
            },
        )
        assert reply.choices[0].finish_reason == "stop"
        jsonschema.validate(json.loads(reply.choices[0].message.content), LOAF_SCHEMA)


def test_parse_with_a_pydantic_model(live_server: str, agent: str) -> None:
    client = _client(live_server)
    parsed = client.chat.completions.parse(
        model=agent,
        messages=[{"role": "user", "content": "Name a loaf and its weight."}],
        response_format=Loaf,
        max_tokens=40,
        temperature=0,
    )
    loaf = parsed.choices[0].message.parsed
    assert isinstance(loaf, Loaf)


def test_tool_call_round_trip(live_server: str, agent: str) -> None:
    client = _client(live_server)
    call = client.chat.completions.create(
        model=agent,
        messages=ASK,
        tools=[WEATHER],
        tool_choice="required",
        parallel_tool_calls=False,  # one call, never a list
        max_tokens=40,
    )
    choice = call.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    (tool_call,) = choice.message.tool_calls
    assert tool_call.type == "function" and tool_call.id.startswith("call_")
    assert tool_call.function.name == "get_weather"
    arguments = json.loads(tool_call.function.arguments)
    jsonschema.validate(arguments, WEATHER["function"]["parameters"])

    history = [
        *ASK,
        choice.message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": tool_call.id, "content": "Sunny, 24 C"},
    ]
    final = client.chat.completions.create(
        model=agent, messages=history, tools=[WEATHER], tool_choice="none", max_tokens=12
    )
    assert final.choices[0].finish_reason in {"stop", "length"}
    assert final.choices[0].message.content and not final.choices[0].message.tool_calls
    # The call and its result reached the prompt.
    alone = client.chat.completions.create(
        model=agent, messages=ASK, tools=[WEATHER], tool_choice="none", max_tokens=1
    )
    assert final.usage.prompt_tokens > alone.usage.prompt_tokens + 10


def test_tool_history_reads_as_text() -> None:
    history = chat_messages(
        [
            OpenAIMessage.model_validate(m)
            for m in [
                *ASK,
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "call_1",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                        }
                    ],
                },
                {"role": "tool", "tool_call_id": "call_1", "content": "Sunny, 24 C"},
            ]
        ]
    )
    assert [m.role for m in history] == ["user", "assistant", "user"]
    assert json.loads(history[1].content) == {"name": "get_weather", "arguments": {"city": "Paris"}}
    assert history[2].content == "Result of get_weather (call call_1): Sunny, 24 C"


def test_streamed_tool_call_deltas(live_server: str, agent: str) -> None:
    client = _client(live_server)
    heads: list[Any] = []
    arguments: dict[int, str] = {}
    finish = None
    for chunk in client.chat.completions.create(
        model=agent,
        messages=ASK,
        tools=[WEATHER],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        max_tokens=120,  # room for the longest call the schema allows (a 20-character city)
        temperature=0,
        stream=True,
    ):
        for choice in chunk.choices:
            finish = choice.finish_reason or finish
            for delta in choice.delta.tool_calls or []:
                assert delta.index is not None
                if delta.id is not None:
                    heads.append(delta)
                arguments[delta.index] = arguments.get(delta.index, "") + (
                    delta.function.arguments or ""
                )
    assert finish == "tool_calls"
    assert heads and all(h.type == "function" and h.function.name == "get_weather" for h in heads)
    assert json.loads(arguments[0])["city"]


def test_async_client_with_tools_auto(live_server: str, agent: str) -> None:
    async def ask() -> Any:
        async with openai.AsyncOpenAI(
            base_url=f"{live_server}/v1", api_key="unused", max_retries=0, timeout=120
        ) as client:
            return await client.chat.completions.create(
                model=agent, messages=ASK, tools=[WEATHER], max_tokens=30, temperature=0
            )

    reply = asyncio.run(ask())
    choice = reply.choices[0]
    # auto: text or a valid call, never a malformed one
    if choice.finish_reason == "tool_calls":
        assert json.loads(choice.message.tool_calls[0].function.arguments)["city"]
    else:
        assert choice.message.content and not choice.message.content.startswith("{")


def test_text_completion(live_server: str, agent: str) -> None:
    client = _client(live_server)
    reply = client.completions.create(
        model=agent,
        prompt=["Once upon a time", "The bread"],
        max_tokens=5,
        temperature=0,
        logprobs=2,
    )
    assert [c.index for c in reply.choices] == [0, 1]
    assert all(c.text for c in reply.choices)
    logprobs = reply.choices[0].logprobs
    assert logprobs.tokens and len(logprobs.tokens) == len(logprobs.token_logprobs)
    assert all(len(t) == 2 for t in logprobs.top_logprobs)
    assert "".join(logprobs.tokens) == reply.choices[0].text
    pieces = [
        c.choices[0].text
        for c in client.completions.create(
            model=agent, prompt="Once upon a time", max_tokens=5, temperature=0, stream=True
        )
        if c.choices
    ]
    assert "".join(pieces) == reply.choices[0].text


def test_embeddings_are_the_knowledge_embedder(live_server: str, services: Services) -> None:
    client = _client(live_server)
    texts = ["fresh bread", "a stormy sea"]
    expected = services.knowledge.embedder.embed_documents(texts)
    got = client.embeddings.create(model="anything", input=texts)  # the package asks base64
    assert [d.index for d in got.data] == [0, 1]
    for item, vector in zip(got.data, expected, strict=True):
        assert item.embedding == pytest.approx(vector, abs=1e-6)
    raw = httpx.post(
        f"{live_server}/v1/embeddings",
        json={"input": "fresh bread", "encoding_format": "float"},
        timeout=60,
    ).json()
    assert raw["data"][0]["embedding"] == pytest.approx(expected[0], abs=1e-6)
    assert raw["usage"]["prompt_tokens"] > 0
    packed = httpx.post(
        f"{live_server}/v1/embeddings",
        json={"input": "fresh bread", "encoding_format": "base64"},
        timeout=60,
    ).json()["data"][0]["embedding"]
    decoded = struct.unpack(f"<{len(expected[0])}f", base64.b64decode(packed))
    assert list(decoded) == pytest.approx(expected[0], abs=1e-6)


@pytest.mark.parametrize(
    ("extra", "param", "reason"),
    [
        ({"tools": [{"type": "nope"}]}, "tools[0].type", "must be 'function'"),
        (
            {"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": 5}}}]},
            "tools[0].function.parameters",
            "not a valid JSON schema",
        ),
        (
            {"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "x"}}},
            "tool_choice.function.name",
            "not in tools",
        ),
        (
            {
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {"name": "s", "schema": {"type": "strnig"}},
                }
            },
            "response_format.json_schema.schema",
            "not a valid JSON schema",
        ),
        (
            {
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {"name": "s", "schema": {"type": "string", "pattern": "(?=a)b"}},
                }
            },
            "response_format.json_schema.schema",
            "look-around",
        ),
        ({"response_format": {"type": "yaml"}}, "response_format.type", "json_schema"),
        ({"logit_bias": {"bread": 5}}, "logit_bias", "not a token id"),
        ({"top_logprobs": 2}, "top_logprobs", "needs logprobs"),
        ({"functions": [{"name": "f"}]}, "functions", "not supported"),
    ],
)
def test_bad_parameters_are_400_naming_them(
    live_server: str, agent: str, extra: dict[str, Any], param: str, reason: str
) -> None:
    response = httpx.post(
        f"{live_server}/v1/chat/completions",
        json={"model": agent, "messages": ASK, "max_tokens": 2, **extra},
        timeout=60,
    )
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == param
    assert reason in error["message"]


def test_langchain_structured_output_and_tools(live_server: str, agent: str) -> None:
    from langchain_core.tools import tool
    from langchain_openai import ChatOpenAI

    llm = ChatOpenAI(
        base_url=f"{live_server}/v1", api_key="unused", model=agent, max_tokens=60, max_retries=0
    )
    loaf = llm.with_structured_output(Loaf).invoke("Name a loaf and its weight.")
    assert isinstance(loaf, Loaf)

    @tool
    def get_weather(city: Literal["Paris", "London", "Rome"]) -> str:
        """The weather in a city."""
        return "sunny"

    message = llm.bind_tools(
        [get_weather], tool_choice="get_weather", parallel_tool_calls=False
    ).invoke("Weather in Paris?")
    assert message.tool_calls and message.tool_calls[0]["name"] == "get_weather"
    # The grammar holds the arguments to the tool's schema, whatever the tiny model prefers.
    assert message.tool_calls[0]["args"]["city"] in {"Paris", "London", "Rome"}


# ----- the README's examples run as written --------------------------------------------------
README = Path(__file__).resolve().parents[2] / "README.md"
RUN = ["openai-basics", "openai-parse", "openai-tools", "langchain", "gradio-client"]


def _readme_examples() -> dict[str, str]:
    text = README.read_text(encoding="utf-8")
    return {
        name: code
        for code, name in re.findall(r"```python\n(# example: ([\w-]+)\n.*?)```", text, re.S)
    }


def test_every_readme_example_is_run() -> None:
    assert sorted(_readme_examples()) == sorted(RUN)


@pytest.mark.parametrize("name", RUN)
def test_readme_example_runs(
    live_server: str, agent: str, name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = _readme_examples()[name].replace("http://127.0.0.1:7860", live_server)
    exec(compile(code, f"README.md example {name}", "exec"), {"__name__": "readme_example"})
    assert capsys.readouterr().out.strip()


# ----- what each backend cannot do is refused, never ignored ---------------------------------
@pytest.mark.parametrize(
    ("options", "param"),
    [
        ({"presence_penalty": 1.0}, "presence_penalty"),
        ({"frequency_penalty": 1.0}, "frequency_penalty"),
        ({"logit_bias": {1: 2.0}}, "logit_bias"),
        ({"logprobs": True}, "logprobs"),
        ({"grammar": "%llguidance {}\nstart: /a/\n"}, "tools"),
        ({"response_format": {"type": "json_object"}}, "response_format"),
        ({"raw_prompt": "Once"}, "prompt"),
    ],
)
def test_transformers_backend_refuses_what_it_cannot_do(
    options: dict[str, Any], param: str
) -> None:
    from agents.llm.transformers_backend import TransformersBackend

    class Transformers:  # what the request check reads of the real backend, without loading it
        request_options = TransformersBackend.request_options
        model_name = "transformers"

    with pytest.raises(ParameterError) as refused:
        with_options(GenerationSettings(), options, Transformers())
    assert refused.value.param == param and refused.value.status == 400
    # A seed is a generation setting it honours.
    assert with_options(GenerationSettings(seed=3), {}, Transformers()).seed == 3


def test_openai_backend_passes_on_what_the_server_takes(settings: Any) -> None:
    from agents.llm.openai_backend import OpenAICompatBackend

    backend = OpenAICompatBackend(settings)
    schema = {"type": "json_schema", "json_schema": {"name": "loaf", "schema": LOAF_SCHEMA}}
    request = with_options(
        GenerationSettings(),
        {
            "presence_penalty": 0.5,
            "frequency_penalty": 0.25,
            "logit_bias": {42: -100.0},
            "logprobs": True,
            "top_logprobs": 2,
            "response_format": schema,
        },
        backend,
    )
    body = backend.payload([], request)
    assert body["presence_penalty"] == 0.5 and body["frequency_penalty"] == 0.25
    assert body["logit_bias"] == {"42": -100.0}
    assert body["logprobs"] is True and body["top_logprobs"] == 2
    assert body["response_format"] == schema  # the server constrains it itself
    assert "grammar" not in body
    for options, param in [
        ({"grammar": "%llguidance {}\nstart: /a/\n"}, "tools"),
        ({"raw_prompt": "Once"}, "prompt"),
    ]:
        with pytest.raises(ParameterError) as refused:
            with_options(GenerationSettings(), options, backend)
        assert refused.value.param == param
    backend.close()
