"""OpenAI request/response shapes (chat, text completion, embeddings), kept apart from the domain.

Every OpenAI parameter that changes generation is typed and honoured, or refused with a 400
naming it (``refused_parameters``, and per backend ``agents.llm.options``). Fields that only
label a request (``user``, ``metadata``, ``store``...) are accepted, so existing clients work
unchanged.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from agents.llm.options import ParameterError
from agents.llm.tools import call_text, result_text
from agents.schema import ChatMessage
from knowledge.service import Source

# OpenAI parameters Anima does not do: a request that sets one gets a 400 naming it rather
# than a reply that silently ignores it.
REFUSED = ("functions", "function_call", "audio", "prediction", "web_search_options")


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: str
    text: str | None = None


class FunctionCall(BaseModel):
    name: str
    arguments: str = ""


class MessageToolCall(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: str = ""
    type: Literal["function"] = "function"
    function: FunctionCall


class OpenAIMessage(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_calls: list[MessageToolCall] | None = None  # an assistant's earlier calls
    tool_call_id: str | None = None  # a tool result: the call it answers

    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(p.text or "" for p in self.content if p.type == "text")
        return self.content or ""

    def to_chat(self, call_names: dict[str, str] | None = None) -> ChatMessage | None:
        """The message as the model reads it; calls and tool results as readable text."""
        text = self.text()
        if self.role == "assistant" and self.tool_calls:
            calls = "\n".join(
                call_text(c.function.name, c.function.arguments) for c in self.tool_calls
            )
            text = f"{text}\n{calls}".strip()
        if self.role == "tool":
            name = self.name or (call_names or {}).get(self.tool_call_id or "")
            text = result_text(name, self.tool_call_id, text)
        role = {"developer": "system", "tool": "user"}.get(self.role, self.role)
        return ChatMessage(role=role, content=text)  # type: ignore[arg-type]


def chat_messages(messages: list[OpenAIMessage]) -> list[ChatMessage]:
    """The history as the model reads it; a tool result names the function it came from."""
    names = {
        call.id: call.function.name for m in messages for call in (m.tool_calls or []) if call.id
    }
    return [m for m in (msg.to_chat(names) for msg in messages) if m is not None]


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")
    include_usage: bool = False


class ChatCompletionRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: str = Field(description="The agent id (see GET /v1/models).")
    messages: list[OpenAIMessage] = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    stop: str | list[str] | None = None
    seed: int | None = None
    n: int = Field(default=1, ge=1, le=16, description="Choices, generated concurrently.")
    user: str | None = None
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    logit_bias: dict[str, float] | None = Field(
        default=None, description="Token id (as a string) to a bias in [-100, 100]."
    )
    logprobs: bool | None = None
    top_logprobs: int | None = Field(default=None, ge=0, le=20)
    response_format: dict[str, Any] | None = Field(
        default=None, description="text, json_object or json_schema (grammar-constrained)."
    )
    tools: list[Any] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None

    def request_options(self) -> dict[str, Any]:
        """The per-request options (``agents.llm.options``), checked; tools come apart."""
        refused_parameters(self)
        out: dict[str, Any] = {}
        for key in ("presence_penalty", "frequency_penalty", "response_format"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        if self.logit_bias:
            out["logit_bias"] = logit_bias(self.logit_bias)
        if self.top_logprobs is not None and not self.logprobs:
            raise ParameterError("top_logprobs needs logprobs: true", "top_logprobs")
        if self.logprobs:
            out["logprobs"] = True
            out["top_logprobs"] = self.top_logprobs or 0
        return out

    def generation_overrides(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        tokens = self.max_completion_tokens or self.max_tokens
        if tokens is not None:
            out["max_new_tokens"] = tokens
        for key in ("temperature", "top_p", "seed"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        if self.stop:
            out["stop"] = [self.stop] if isinstance(self.stop, str) else list(self.stop)
        return out


def refused_parameters(body: BaseModel) -> None:
    extra = body.model_extra or {}
    for name in REFUSED:
        if extra.get(name) is not None:
            raise ParameterError(f"{name} is not supported by Anima", name)


def logit_bias(bias: dict[str, float]) -> dict[int, float]:
    out: dict[int, float] = {}
    for key, value in bias.items():
        try:
            token = int(key)
        except ValueError:
            raise ParameterError(
                f"logit_bias key {key!r} is not a token id", "logit_bias"
            ) from None
        if token < 0 or not -100 <= value <= 100:
            raise ParameterError(
                "logit_bias maps token ids (>= 0) to a bias in [-100, 100]", "logit_bias"
            )
        out[token] = value
    return out


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str
    name: str


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class CompletionUsage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class TopLogprob(BaseModel):
    token: str
    logprob: float
    bytes: list[int] | None = None


class TokenLogprob(TopLogprob):
    top_logprobs: list[TopLogprob] = []


class ChoiceLogprobs(BaseModel):
    content: list[TokenLogprob] | None = None


class ResponseMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str | None
    tool_calls: list[MessageToolCall] | None = None


class Choice(BaseModel):
    index: int = 0
    message: ResponseMessage
    finish_reason: str
    logprobs: ChoiceLogprobs | None = None


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: CompletionUsage
    # Anima's own: the knowledge the reply was grounded on ([1], [2]... in the text). The
    # openai package keeps unknown fields (``completion.model_extra["sources"]``).
    sources: list[Source] = []


# ----- text completion (``/v1/completions``) ------------------------------------------------
class CompletionRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: str = Field(description="The agent id (see GET /v1/models).")
    prompt: str | list[str] = Field(description="Used as is: the agent's persona is not added.")
    max_tokens: int | None = Field(default=16, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    stop: str | list[str] | None = None
    seed: int | None = None
    n: int = Field(default=1, ge=1, le=16)
    stream: bool = False
    stream_options: StreamOptions | None = None
    logprobs: int | None = Field(default=None, ge=0, le=5)
    echo: bool = False
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    logit_bias: dict[str, float] | None = None
    user: str | None = None

    def prompts(self) -> list[str]:
        prompts = [self.prompt] if isinstance(self.prompt, str) else list(self.prompt)
        if not prompts or not all(p for p in prompts):
            raise ParameterError("prompt must be a non-empty string or list of them", "prompt")
        if self.echo:
            raise ParameterError("echo is not supported", "echo")
        if (self.model_extra or {}).get("suffix") is not None:
            raise ParameterError("suffix is not supported", "suffix")
        if (self.model_extra or {}).get("best_of") not in (None, 1):
            raise ParameterError("best_of is not supported", "best_of")
        return prompts

    def generation_overrides(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.max_tokens is not None:
            out["max_new_tokens"] = self.max_tokens
        for key in ("temperature", "top_p", "seed"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        # A raw completion stops only where the client says (the agent's own stops are for
        # chat turns).
        out["stop"] = [self.stop] if isinstance(self.stop, str) else list(self.stop or [])
        return out

    def request_options(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key in ("presence_penalty", "frequency_penalty"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        if self.logit_bias:
            out["logit_bias"] = logit_bias(self.logit_bias)
        if self.logprobs is not None:
            out["logprobs"] = True
            out["top_logprobs"] = self.logprobs
        return out


class CompletionLogprobs(BaseModel):
    tokens: list[str]
    token_logprobs: list[float]
    top_logprobs: list[dict[str, float]]
    text_offset: list[int]


class CompletionChoice(BaseModel):
    index: int
    text: str
    finish_reason: str
    logprobs: CompletionLogprobs | None = None


class TextCompletion(BaseModel):
    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: CompletionUsage


# ----- embeddings (``/v1/embeddings``) ------------------------------------------------------
class EmbeddingRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: str = Field(default="anima-embed", description="Any name: one embedder serves all.")
    input: str | list[str] = Field(description="A text or a list of texts.")
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = None
    user: str | None = None

    def texts(self) -> list[str]:
        texts = [self.input] if isinstance(self.input, str) else list(self.input)
        if not texts or not all(isinstance(t, str) and t for t in texts):
            raise ParameterError("input must be a non-empty string or list of them", "input")
        if len(texts) > 2048:
            raise ParameterError("input holds more than 2048 texts", "input")
        if self.dimensions is not None:
            raise ParameterError("dimensions is not supported: the size is fixed", "dimensions")
        return texts


class Embedding(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str


class EmbeddingUsage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class EmbeddingList(BaseModel):
    object: Literal["list"] = "list"
    data: list[Embedding]
    model: str
    usage: EmbeddingUsage
