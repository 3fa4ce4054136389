"""A service's refusal on the agent pages is shown on the form, never a 500 or a success
message, and nothing is written.

The agent change form saves through versions.services.update_agent and the add page
through create_agent. Their own rules (permissions, slug, uniqueness) are checked by the
form first, so a refusal reaches the page only after a race with another editor: the
tests inject it at the service.
"""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from agentconfig.core.errors import Conflict, Forbidden
from agentconfig.models import Agent
from agentconfig.site import admin as agent_admin


def _refusing(error: Exception):
    def refuse(**kwargs):
        raise error

    return refuse


def _change(client, agent, **data):
    url = reverse("admin:agentconfig_agent_change", args=[agent.pk])
    return client.post(url, {"name": "Renamed", "description": "", **data})


def test_agent_change__service_refuses_a_field__error_next_to_it_typed_value_kept_nothing_saved(
    admin_client, agent, monkeypatch
):
    # Given the service refuses the name (as another editor's change would make it)
    monkeypatch.setattr(
        agent_admin, "update_agent", _refusing(ValidationError({"name": "is taken meanwhile."}))
    )
    history = agent.history.count()

    # When the form is saved
    response = _change(admin_client, agent)

    # Then the same form again, the refusal next to the field, what was typed still there
    assert response.status_code == 200
    form = response.context["adminform"].form
    assert form.errors["name"] == ["is taken meanwhile."]
    assert 'value="Renamed"' in response.content.decode()
    assert "was changed successfully" not in response.content.decode()
    agent.refresh_from_db()
    assert agent.name != "Renamed"
    assert agent.history.count() == history


@pytest.mark.parametrize(
    "error",
    [Forbidden("bob may not change agents."), Conflict("someone else changed the agent.")],
    ids=["forbidden", "conflict"],
)
def test_agent_change__service_refuses__words_on_the_form_nothing_saved(
    admin_client, agent, monkeypatch, error
):
    monkeypatch.setattr(agent_admin, "update_agent", _refusing(error))

    response = _change(admin_client, agent)

    assert response.status_code == 200
    errors = response.context["adminform"].form.non_field_errors()
    assert list(errors) == [f"Nothing was saved: {error.message}"]
    agent.refresh_from_db()
    assert agent.name != "Renamed"


def test_agent_add__service_conflict__error_on_the_form_nothing_created(
    admin_client, db, monkeypatch
):
    # Given another editor creates the same agent between the form's check and the save
    monkeypatch.setattr(
        agent_admin, "create_agent", _refusing(Conflict("support-bot was created meanwhile."))
    )

    response = admin_client.post(
        reverse("admin:agentconfig_agent_add"),
        {"slug": "support-bot", "name": "Support bot", "description": ""},
    )

    assert response.status_code == 200
    assert "support-bot was created meanwhile." in response.content.decode()
    assert not Agent.objects.exists()


def test_agent_add__service_forbids__403_page_in_its_words_nothing_created(
    admin_client, db, monkeypatch
):
    monkeypatch.setattr(
        agent_admin, "create_agent", _refusing(Forbidden("bob may not create agents."))
    )

    response = admin_client.post(
        reverse("admin:agentconfig_agent_add"),
        {"slug": "support-bot", "name": "Support bot", "description": ""},
    )

    assert response.status_code == 403
    assert "bob may not create agents." in response.content.decode()
    assert not Agent.objects.exists()
