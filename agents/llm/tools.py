"""Function calling for models that were not trained for it: a prompt and a grammar.

The agent is told which functions exist and that a call is a JSON object
``{"name": ..., "arguments": {...}}`` (several: a JSON array of them). The llama.cpp engine then
decodes under a grammar built from the functions' parameter schemas (``agents.llm.grammar``),
so a call always names a real function with arguments that match its schema, even on a tiny
model. ``tool_choice``:

- ``auto``: the reply is either text (anything not starting with ``{`` or ``[``) or call(s);
- ``required``: call(s) only; a named function: a call of that function only;
- ``none``: plain text, and the functions are not offered.

Tool results in the history (``role: "tool"``) and earlier calls (an assistant's
``tool_calls``) are written into the prompt in the same JSON form the model is taught.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from typing import Any

from agents.llm.grammar import HEADER, check_grammar, check_json_schema, json_rule
from agents.llm.options import ParameterError

_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
EMPTY_PARAMETERS: dict[str, Any] = {"type": "object", "properties": {}}


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    parameters: dict[str, Any]


@dataclass(frozen=True)
class ToolCall:
    id: str
    name: str
    arguments: str  # a JSON string, as OpenAI sends it


@dataclass(frozen=True)
class ToolPlan:
    """What a request's ``tools``/``tool_choice`` mean for one generation."""

    tools: list[Tool]
    grammar: str | None  # None: the model answers in text only
    forced: bool  # the reply must be call(s)

    def instructions(self) -> str:
        """The system text that offers the functions to the model."""
        lines = [
            "You can call these functions. To call one, reply with only a JSON object "
            '{"name": <function name>, "arguments": <arguments object>}'
            + (" (several calls: a JSON array of such objects)" if self.grammar else "")
            + "; otherwise answer in plain text.",
        ]
        for tool in self.tools:
            lines.append(
                f"- {tool.name}: {tool.description or '(no description)'} "
                f"Arguments schema: {json.dumps(tool.parameters, separators=(',', ':'))}"
            )
        return "\n".join(lines)


def parse_tools(tools: Any) -> list[Tool]:
    """OpenAI ``tools`` checked field by field (400 naming the field)."""
    if not isinstance(tools, list) or not tools:
        raise ParameterError("tools must be a non-empty list", "tools")
    out: list[Tool] = []
    for i, item in enumerate(tools):
        where = f"tools[{i}]"
        if not isinstance(item, dict) or item.get("type") != "function":
            raise ParameterError(f"{where}.type must be 'function'", f"{where}.type")
        fn = item.get("function")
        if not isinstance(fn, dict):
            raise ParameterError(f"{where}.function must be an object", f"{where}.function")
        name = fn.get("name")
        if not isinstance(name, str) or not _NAME.match(name):
            raise ParameterError(
                f"{where}.function.name must be 1-64 letters, digits, '_' or '-'",
                f"{where}.function.name",
            )
        if any(t.name == name for t in out):
            raise ParameterError(f"{where}.function.name {name!r} is repeated", f"{where}.function")
        parameters = fn.get("parameters", EMPTY_PARAMETERS)
        check_json_schema(parameters, f"{where}.function.parameters")
        description = fn.get("description") or ""
        if not isinstance(description, str):
            raise ParameterError(
                f"{where}.function.description must be a string", f"{where}.function.description"
            )
        out.append(Tool(name=name, description=description, parameters=parameters))
    return out


def plan(tools: Any, tool_choice: Any, parallel: bool | None) -> ToolPlan | None:
    """The plan for ``tools``/``tool_choice``; ``None`` when no function is offered."""
    if tools is None:
        if tool_choice not in (None, "none", "auto"):
            raise ParameterError("tool_choice needs tools", "tool_choice")
        return None
    parsed = parse_tools(tools)
    choice = "auto" if tool_choice is None else tool_choice
    if choice == "none":
        return None
    if choice in ("auto", "required"):
        offered, forced = parsed, choice == "required"
    elif isinstance(choice, dict) and choice.get("type") == "function":
        function = choice.get("function")
        name = function.get("name") if isinstance(function, dict) else None
        offered = [t for t in parsed if t.name == name]
        if not offered:
            raise ParameterError(
                f"tool_choice names {name!r}, which is not in tools", "tool_choice.function.name"
            )
        forced = True
    else:
        raise ParameterError(
            "tool_choice must be 'none', 'auto', 'required' or "
            '{"type": "function", "function": {"name": ...}}',
            "tool_choice",
        )
    rules = [f"call_{i}: {json_rule(_call_schema(t))}" for i, t in enumerate(offered)]
    one = " | ".join(f"call_{i}" for i in range(len(offered)))
    calls = 'call | "[" call ("," call)* "]"' if parallel is not False else "call"
    start = "calls" if forced else "calls | text"
    grammar = (
        f"{HEADER}start: {start}\ncalls: {calls}\ncall: {one}\n"
        + "\n".join(rules)
        + "\ntext: /[^\\[{\\s](.|\\n)*/\n"
    )
    return ToolPlan(tools=offered, grammar=check_grammar(grammar, "tools"), forced=forced)


def _call_schema(tool: Tool) -> dict[str, Any]:
    arguments = dict(tool.parameters)
    if arguments.get("type") == "object" and "additionalProperties" not in arguments:
        # A call carries the declared arguments only (as OpenAI's do); left open, a small
        # model invents keys until its token budget runs out.
        arguments["additionalProperties"] = False
    return {
        "type": "object",
        "properties": {"name": {"const": tool.name}, "arguments": arguments},
        "required": ["name", "arguments"],
        "additionalProperties": False,
    }


def parse_calls(text: str) -> list[ToolCall] | None:
    """The calls in a reply decoded under a tool grammar; ``None`` when it is text.

    A call cut short (``max_tokens``) is not valid JSON: it is returned as text.
    """
    if text[:1] not in ("{", "["):
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    items = value if isinstance(value, list) else [value]
    calls: list[ToolCall] = []
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            return None
        calls.append(
            ToolCall(
                id=f"call_{uuid.uuid4().hex[:24]}",
                name=item["name"],
                arguments=json.dumps(item.get("arguments", {}), ensure_ascii=False),
            )
        )
    return calls or None


def call_text(name: str, arguments: str) -> str:
    """An earlier call, written as the model is taught to write one."""
    try:
        args: Any = json.loads(arguments) if arguments else {}
    except ValueError:
        args = arguments
    return json.dumps({"name": name, "arguments": args}, ensure_ascii=False)


def result_text(name: str | None, call_id: str | None, content: str) -> str:
    """A tool's result, as the model reads it (a user turn)."""
    who = name or "a function"
    ref = f" (call {call_id})" if call_id else ""
    return f"Result of {who}{ref}: {content}"
