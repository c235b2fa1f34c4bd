"""What callers see of an agent (``AgentView``, an exported ``CardFile``) and who is told when
agents change (``AgentListener``): shared by the agent service, the chain, the API and the UI
without pulling in the service itself."""

from __future__ import annotations

from typing import Any, Literal, Protocol

from pydantic import BaseModel
from pydantic import ValidationError as PydanticValidationError

from agents.schema import GenerationSettings
from core.db import UTCDateTime
from core.errors import ValidationError, describe_validation_error

# Who sees an agent: ``public`` is listed to everyone; ``unlisted`` works for anyone who has
# its id but is not listed; ``private`` exists only for its owner (and the owner's API keys).
Visibility = Literal["public", "unlisted", "private"]
VISIBILITIES: tuple[str, ...] = ("public", "unlisted", "private")


class AgentView(BaseModel):
    """What callers see of an agent: the card data plus Anima's own settings."""

    id: str
    name: str
    spec: str
    data: dict[str, Any]
    generation: GenerationSettings
    model: str | None
    adapter: str | None
    owner_address: str | None
    visibility: Visibility = "public"
    # On-chain identity: see chain/service.py. token_id is a decimal string
    # (uint256); mint_state is None (never minted), pending, minted or failed.
    token_id: str | None
    mint_state: str | None = None
    token_contract: str | None = None
    chain_id: int | None = None
    chain_card_hash: str | None = None
    chain_card_version: int | None = None
    content_hash: str
    version: int
    has_avatar: bool
    created_at: UTCDateTime
    updated_at: UTCDateTime


class CardFile(BaseModel):
    content: bytes
    media_type: str
    filename: str


def merge_generation(base: dict[str, Any], overrides: dict[str, Any]) -> GenerationSettings:
    """``base`` with ``overrides`` applied, checked; bad values name the field (422)."""
    try:
        return GenerationSettings.model_validate({**base, **overrides})
    except PydanticValidationError as exc:
        raise ValidationError(describe_validation_error(exc, "generation")) from exc


class AgentListener(Protocol):
    """Told about changes after they are committed (the chain mints and anchors on them).

    A listener that fails is logged and never undoes the change: what it starts is durable
    work that can be retried (a mint from the agent page, an anchor on the next edit).
    """

    def agent_created(self, agent: AgentView) -> None: ...

    def card_changed(self, agent: AgentView) -> None: ...

    def agent_deleted(self, agent_id: str) -> None: ...
