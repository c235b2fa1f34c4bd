"""Controls built from a pydantic schema's own bounds and defaults.

A slider that hard-codes its range drifts from the schema it feeds (the form offered a
temperature up to 2.0 while the service accepts 5.0). Building the control from the field
keeps them in one place: the schema says what is allowed, the UI only chooses how it looks.
A layout may narrow a slider (a 1..256 rank is hard to aim on a slider) but never widen it.
"""

from __future__ import annotations

from typing import Any

import gradio as gr
from pydantic import BaseModel
from pydantic_core import PydanticUndefined

Range = tuple[float | None, float | None]


def bounds(model: type[BaseModel], name: str) -> Range:
    """The (min, max) the schema allows for ``name`` (exclusive bounds included as is)."""
    low = high = None
    for rule in model.model_fields[name].metadata:
        low = getattr(rule, "ge", getattr(rule, "gt", low))
        high = getattr(rule, "le", getattr(rule, "lt", high))
    return low, high


def exclusive(model: type[BaseModel], name: str) -> tuple[bool, bool]:
    """Whether the low and the high bound are exclusive (``gt`` / ``lt``)."""
    rules = model.model_fields[name].metadata
    return (
        any(getattr(r, "gt", None) is not None for r in rules),
        any(getattr(r, "lt", None) is not None for r in rules),
    )


def default(model: type[BaseModel], name: str) -> Any:
    info = model.model_fields[name]
    if info.default_factory is not None:
        return info.default_factory()  # type: ignore[call-arg]
    return None if info.default is PydanticUndefined else info.default


def slider(
    model: type[BaseModel],
    name: str,
    *,
    step: float,
    narrow: Range = (None, None),
    **options: Any,
) -> gr.Slider:
    """A slider over the field's range (``narrow`` may only tighten it); default from the schema.

    An exclusive bound moves in by one ``step``: a slider cannot stop just short of a value.
    """
    low, high = bounds(model, name)
    if low is None or high is None:
        raise ValueError(f"{model.__name__}.{name} has no range; use number()")
    open_low, open_high = exclusive(model, name)
    low, high = low + step * open_low, high - step * open_high
    low = max(low, narrow[0]) if narrow[0] is not None else low
    high = min(high, narrow[1]) if narrow[1] is not None else high
    return gr.Slider(low, high, value=default(model, name), step=step, **options)


def number(
    model: type[BaseModel], name: str, *, integer: bool = False, **options: Any
) -> gr.Number:
    """A number box limited to the field's range; whole numbers for ``int`` fields."""
    low, high = bounds(model, name)
    return gr.Number(
        default(model, name),
        minimum=low,
        maximum=high,
        precision=0 if integer else None,
        **options,
    )


def checkbox(model: type[BaseModel], name: str, **options: Any) -> gr.Checkbox:
    """A checkbox with the field's default; its description becomes the hint."""
    options.setdefault("info", model.model_fields[name].description)
    return gr.Checkbox(bool(default(model, name)), **options)
