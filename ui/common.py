"""What every studio tab shares: how agents appear in dropdowns and how errors are shown.

The tabs only translate between widgets and service calls; these helpers keep that
translation the same everywhere (one label format, one way to report a refused request).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import gradio as gr

from agents.service import AgentView
from chain.auth import SESSION_COOKIE
from container import Services
from core.errors import AnimaError
from core.principal import ANONYMOUS, Principal
from core.visitor import VISITOR_COOKIE


def agent_label(agent: AgentView) -> str:
    """Name plus a short id: two agents may share a name, their ids never do."""
    return _label(agent.name, agent.id)


def _label(name: str, agent_id: str) -> str:
    return f"{name} · {agent_id[:8]}"


def agent_choices(services: Services, principal: Principal) -> list[tuple[str, str]]:
    """``(label, agent id)`` pairs for a dropdown, oldest agent first: the agents ``principal``
    may see (public ones and its own; someone else's private agent is not even named). Reads
    names only, so pickers stay quick with thousands of agents."""
    return [(_label(name, i), i) for i, name in services.agents.visible_names(principal=principal)]


def keep_choice(value: Any, choices: list[tuple[str, str]]) -> str | None:
    """The current selection if it still exists (an agent may have been deleted meanwhile)."""
    return value if value in {v for _, v in choices} else None


def show_error(problem: AnimaError | str) -> str:
    """Pop a warning toast and return the same message for the tab's status line.

    Only domain errors come here: their message is written for the user. Anything else is a
    bug and goes to Gradio's own handler (a generic toast; the trace stays in the server log).
    """
    message = problem.message if isinstance(problem, AnimaError) else problem
    gr.Warning(message)
    return f"⚠️ {message}"


# ----- Who is using the studio (their wallet, from the session cookie) -----------------------
def principal_of(services: Services, request: gr.Request | None) -> Principal:
    """The signed-in wallet of the browser behind a Gradio event (its session cookie), with
    its anonymous visitor id (the signed visitor cookie, ``core.visitor``) when valid.

    ``ui.wiring.wire(..., as_user=True)`` resolves it for each event and hands it to the
    handler as ``principal=``, which passes it on to the services.
    """
    if request is None:
        return ANONYMOUS
    raw = getattr(request, "request", None)
    cookies = raw.cookies if raw is not None else request.kwargs.get("cookies", {})
    try:
        principal = services.auth.principal(session_token=cookies.get(SESSION_COOKIE))
    except AnimaError:  # an expired cookie: the browser is simply anonymous now
        principal = ANONYMOUS
    visitor_id = services.visitors.verify(cookies.get(VISITOR_COOKIE))
    return replace(principal, visitor_id=visitor_id) if visitor_id else principal
