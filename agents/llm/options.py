"""Per-request generation options: what an OpenAI client may ask for one request only.

An agent's ``GenerationSettings`` are its creator's and are stored with it; penalties, a
grammar, log-probabilities or a raw prompt belong to one request and never become agent
settings. ``RequestParams`` is those settings plus these options, so it travels through every
layer that already takes ``GenerationSettings`` (the scheduler, the backends) unchanged.

Each backend says which options it honours (``request_options``); anything else a request asks
for is refused with ``ParameterError`` (HTTP 400 naming the parameter) before generation
starts, never silently ignored.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from agents.schema import GenerationSettings
from core.errors import AnimaError

# Every option a backend may honour; ``grammar`` stands for ``response_format`` and ``tools``
# (the llama.cpp engine decodes both under a grammar), ``raw_prompt`` for ``/v1/completions``.
ALL_OPTIONS = frozenset(
    {
        "presence_penalty",
        "frequency_penalty",
        "logit_bias",
        "logprobs",
        "grammar",
        "response_format",
        "raw_prompt",
    }
)


class ParameterError(AnimaError):
    """A request parameter that is malformed or that this backend cannot honour (400).

    ``param`` is the parameter's name as the client sent it (``tools[0].function.parameters``),
    returned in the OpenAI error shape's ``param`` field.
    """

    status = 400

    def __init__(self, message: str, param: str) -> None:
        super().__init__(message)
        self.param = param


class RequestParams(GenerationSettings):
    """An agent's generation settings plus the options of one request."""

    presence_penalty: float = Field(default=0.0, ge=-2.0, le=2.0)
    frequency_penalty: float = Field(default=0.0, ge=-2.0, le=2.0)
    logit_bias: dict[int, float] = Field(default_factory=dict)
    logprobs: bool = False
    top_logprobs: int = Field(default=0, ge=0, le=20)
    # A grammar in llama.cpp's llguidance syntax (``agents.llm.grammar``): output is
    # constrained to it token by token.
    grammar: str | None = None
    # The OpenAI ``response_format`` as sent, for backends that pass it on to a server.
    response_format: dict[str, Any] | None = None
    # Text completion: this text is the whole prompt, tokenized as is (no chat template).
    raw_prompt: str | None = None

    def used_options(self) -> dict[str, str]:
        """The options this request uses, each with the client's name for it."""
        used: dict[str, str] = {}
        if self.presence_penalty:
            used["presence_penalty"] = "presence_penalty"
        if self.frequency_penalty:
            used["frequency_penalty"] = "frequency_penalty"
        if self.logit_bias:
            used["logit_bias"] = "logit_bias"
        if self.logprobs or self.top_logprobs:
            used["logprobs"] = "logprobs"
        if self.grammar is not None:
            used["grammar"] = "response_format"
        if self.response_format is not None:
            used["response_format"] = "response_format"
        if self.raw_prompt is not None:
            used["raw_prompt"] = "prompt"
        return used


def with_options(
    params: GenerationSettings, options: dict[str, Any], backend: Any
) -> RequestParams:
    """``params`` plus ``options``, refused (400) where ``backend`` cannot honour one.

    ``options`` holds OpenAI-named values; a ``grammar`` there came from ``tools``. A
    ``response_format`` becomes a grammar where the backend decodes under one, and is passed
    on as is where the backend's server takes it.
    """
    from agents.llm.grammar import response_format_grammar

    options = dict(options)
    ensure_ready = getattr(backend, "ensure_ready", None)
    if callable(ensure_ready):  # a fallback decided at load time changes what is supported
        ensure_ready()
    supported: frozenset[str] = getattr(backend, "request_options", frozenset())
    grammar_param = "tools"
    response_format = options.pop("response_format", None)
    if response_format is not None:
        grammar = response_format_grammar(response_format)  # malformed: 400 on any backend
        if grammar is not None:
            if options.get("grammar"):
                raise ParameterError(
                    "response_format cannot be combined with tools", "response_format"
                )
            if "grammar" in supported:
                options["grammar"], grammar_param = grammar, "response_format"
            else:
                options["response_format"] = response_format
    request = RequestParams(**params.model_dump(), **options)
    for option, name in request.used_options().items():
        if option not in supported:
            if option == "grammar":
                name = grammar_param
            raise ParameterError(
                f"{name} is not supported by this agent's model backend "
                f"({getattr(backend, 'model_name', 'unknown')})",
                name,
            )
    return request


def wants(params: GenerationSettings, option: str) -> Any:
    """The value of ``option`` in ``params``, or ``None`` for plain generation settings."""
    return getattr(params, option, None) if isinstance(params, RequestParams) else None
