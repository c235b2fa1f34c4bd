"""Where named updates meet Gradio's positional ``outputs=``, in one place.

Handlers (``ui/<screen>/handlers.py``) return a dict keyed by component name and leave out
what they do not change; a layout maps those names onto components once, when it wires an
event. So a handler never has to line up a list with ``outputs=``, tests read results by name,
and a name a handler invents by mistake fails loudly instead of updating the wrong widget.

``wire`` also resolves who is acting: a handler that declares ``principal`` gets the signed-in
wallet of the browser behind the event (``ui.common.principal_of``), which it passes on to the
services; they decide what that wallet may do.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import gradio as gr
from gradio.events import Dependency

from container import Services
from ui.common import principal_of

Updates = dict[str, Any]
Handler = Callable[..., Any]


def pack(names: Sequence[str], updates: Mapping[str, Any] | None) -> Any:
    """``updates`` in the order of ``names``; a name left out is skipped (left as it is).

    Gradio takes a single value (not a one-item list) when an event has one output.
    """
    updates = updates or {}
    unknown = set(updates) - set(names)
    if unknown:
        raise KeyError(f"handler updated {sorted(unknown)}, not among the outputs {list(names)}")
    values = [updates.get(name, gr.skip()) for name in names]
    if not names:
        return None
    return values[0] if len(values) == 1 else values


def runner(
    fn: Handler,
    services: Services,
    names: Sequence[str],
    *,
    as_user: bool = False,
    progress: bool = False,
) -> Callable[..., Any]:
    """A Gradio callback that calls ``fn(services, *inputs)`` and packs its named updates.

    Gradio injects ``gr.Request`` and ``gr.Progress`` by the position of typed parameters, so
    they come first here, before the event's own inputs.
    A handler that declares ``principal`` always gets the caller: the signature decides, so a
    layout cannot forget to pass it (``as_user=True`` on a handler without one is a mistake).
    """
    acts_for_user = "principal" in inspect.signature(fn).parameters
    if as_user and not acts_for_user:
        raise TypeError(f"{fn.__qualname__} is wired as_user but takes no principal")

    def call(request: gr.Request | None, args: tuple, extra: dict[str, Any]) -> Any:
        if acts_for_user:
            extra["principal"] = principal_of(services, request)
        return fn(services, *args, **extra)

    if inspect.isgeneratorfunction(fn):

        def run_stream(request: gr.Request, *args: Any) -> Iterator[Any]:
            for updates in call(request, args, {}):
                yield pack(names, updates)

        return _remember(run_stream, fn)
    if progress:

        def run_progress(request: gr.Request, progress=gr.Progress(), *args: Any) -> Any:
            return pack(names, call(request, args, {"progress": progress}))

        return _remember(run_progress, fn)

    def run(request: gr.Request, *args: Any) -> Any:
        return pack(names, call(request, args, {}))

    return _remember(run, fn)


def _remember(callback: Callable[..., Any], fn: Handler) -> Callable[..., Any]:
    """Keep the handler on its Gradio callback, so tests can walk every UI action to it."""
    callback.handler = fn  # type: ignore[attr-defined]
    return callback


def wire(
    trigger: Any,
    fn: Handler,
    services: Services,
    *,
    inputs: Sequence[Any] = (),
    outputs: Mapping[str, Any] | None = None,
    as_user: bool = False,
    progress: bool = False,
    **event_options: Any,
) -> Dependency:
    """Register ``fn`` on ``trigger`` (an event such as ``button.click``, or a list of them).

    ``outputs`` maps the names ``fn`` returns to components; its order becomes ``outputs=``.
    """
    outputs = dict(outputs or {})
    callback = runner(fn, services, list(outputs), as_user=as_user, progress=progress)
    kwargs = {"inputs": list(inputs), "outputs": list(outputs.values()), **event_options}
    if isinstance(trigger, list):
        return gr.on(triggers=trigger, fn=callback, **kwargs)
    return trigger(callback, **kwargs)
