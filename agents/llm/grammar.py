"""Grammars for constrained decoding on the llama.cpp engine.

The engine's llama.cpp is built with llguidance: a grammar is Lark-like text that starts with
``%llguidance {}`` and may embed a JSON schema as ``%json {...}``, which llguidance compiles
itself. llama.cpp *ignores* a grammar it cannot compile (the reply then comes out
unconstrained), so every grammar is compiled here first with the same library, and a schema it
cannot express is refused (400) with llguidance's own reason.
"""

from __future__ import annotations

import json
from typing import Any

from agents.llm.options import ParameterError

HEADER = "%llguidance {}\n"
# Any JSON object: ``response_format: {"type": "json_object"}``.
ANY_OBJECT: dict[str, Any] = {"type": "object"}


def _check_schema(schema: Any, param: str) -> None:
    if not isinstance(schema, dict):
        raise ParameterError(f"{param} must be a JSON schema object", param)
    try:
        from jsonschema import Draft202012Validator, SchemaError
    except ImportError:  # pragma: no cover - jsonschema ships with the app's dependencies
        return
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        where = "/".join(str(p) for p in exc.path)
        raise ParameterError(
            f"{param} is not a valid JSON schema: {exc.message}"
            + (f" (at {where})" if where else ""),
            param,
        ) from exc


def json_rule(schema: dict[str, Any]) -> str:
    """``schema`` as a grammar rule, in compact JSON: a small model given free whitespace
    may spend its whole token budget on newlines inside the object."""
    compact = {"x-guidance": {"whitespace_flexible": False}, **schema}
    return "%json " + json.dumps(compact, separators=(",", ":"))


def check_grammar(grammar: str, param: str) -> str:
    """``grammar`` if llguidance compiles it, else a 400 with its reason."""
    import llguidance

    error = llguidance.LLMatcher.validate_grammar(grammar)
    if error:
        raise ParameterError(f"{param}: the grammar converter cannot express it: {error}", param)
    return grammar


def schema_grammar(schema: dict[str, Any], param: str) -> str:
    """A grammar whose every sentence is JSON valid against ``schema``."""
    _check_schema(schema, param)
    return check_grammar(f"{HEADER}start: {json_rule(schema)}\n", param)


def response_format_grammar(response_format: Any) -> str | None:
    """The grammar for an OpenAI ``response_format`` (``None`` for plain text)."""
    if not isinstance(response_format, dict):
        raise ParameterError("response_format must be an object", "response_format")
    kind = response_format.get("type")
    if kind in (None, "text"):
        return None
    if kind == "json_object":
        return schema_grammar(ANY_OBJECT, "response_format")
    if kind == "json_schema":
        spec = response_format.get("json_schema")
        if not isinstance(spec, dict):
            raise ParameterError(
                "response_format.json_schema must be an object with 'name' and 'schema'",
                "response_format.json_schema",
            )
        if not isinstance(spec.get("name"), str) or not spec["name"]:
            raise ParameterError(
                "response_format.json_schema.name is required", "response_format.json_schema.name"
            )
        schema = spec.get("schema", ANY_OBJECT)
        return schema_grammar(schema, "response_format.json_schema.schema")
    raise ParameterError(
        f"response_format.type {kind!r}: use 'text', 'json_object' or 'json_schema'",
        "response_format.type",
    )


def check_json_schema(schema: Any, param: str) -> None:
    """400 if ``schema`` is not a JSON schema the grammar converter can express."""
    _check_schema(schema, param)
    check_grammar(f"{HEADER}start: {json_rule(schema)}\n", param)
