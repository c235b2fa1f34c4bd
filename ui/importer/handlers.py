"""The import screen's handler: one uploaded card file, one new agent owned by the uploader."""

from __future__ import annotations

from pathlib import Path

from container import Services
from core.errors import AnimaError
from core.principal import Principal
from ui.common import agent_label, show_error
from ui.wiring import Updates


def import_card(services: Services, path: str | None, *, principal: Principal) -> Updates:
    if not path:
        return {"status": ""}
    file = Path(path)
    try:
        agent = services.agents.import_card(
            file.name, file.read_bytes(), owner=principal.address, principal=principal
        )
    except AnimaError as exc:
        return {"status": show_error(exc)}
    return {
        "status": f"Imported **{agent.name}** ({agent_label(agent)}). Open it in the Agents tab."
    }
