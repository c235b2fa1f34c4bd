"""The services check the caller themselves: a handler that forgets to ask cannot let a
stranger change someone's agent, its voice or its adapters."""

from __future__ import annotations

import pytest

from container import Services
from core.errors import AuthError, NotOwnerError
from core.principal import ANONYMOUS, SYSTEM, Principal

OWNER = Principal(address="0x00000000000000000000000000000000000000A1", via="session")
STRANGER = Principal(address="0x00000000000000000000000000000000000000B2", via="session")


def test_only_the_owner_or_the_app_itself_changes_an_owned_agent(services: Services) -> None:
    agent = services.agents.create_agent({"name": "Owned"}, principal=OWNER, owner=OWNER.address)
    for caller, error in ((STRANGER, NotOwnerError), (ANONYMOUS, AuthError)):
        with pytest.raises(error):
            services.agents.update_agent(agent.id, {"name": "Taken"}, principal=caller)
        with pytest.raises(error):
            services.agents.delete_agent(agent.id, principal=caller)
        with pytest.raises(error):
            services.voice.delete_profile(agent.id, principal=caller)
        with pytest.raises(error):
            services.finetune.deactivate(agent.id, principal=caller)
    assert services.agents.get_agent(agent.id).name == "Owned"

    renamed = services.agents.update_agent(agent.id, {"name": "Mine"}, principal=OWNER)
    assert renamed.name == "Mine"
    assert services.agents.update_agent(agent.id, {"name": "Job"}, principal=SYSTEM).name == "Job"
    services.agents.delete_agent(agent.id, principal=OWNER)
    assert services.agents.count_agents() == 0


def test_anonymous_drafts_stay_open_and_creation_follows_the_setting(
    services: Services,
) -> None:
    draft = services.agents.create_agent({"name": "Draft"}, principal=ANONYMOUS)
    edited = services.agents.update_agent(draft.id, {"name": "Edited"}, principal=STRANGER)
    assert edited.name == "Edited"

    services.settings.auth.anonymous_edits = False
    with pytest.raises(AuthError):
        services.agents.create_agent({"name": "Nobody's"}, principal=ANONYMOUS)
    assert services.agents.count_agents() == 1
