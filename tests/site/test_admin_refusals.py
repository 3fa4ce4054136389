"""A service's refusal on the UI layer's admin pages is shown on the page, never a 500 or a
success message, and nothing is written.

The services check what the forms check, so these refusals follow a race with another
editor (or a permission withdrawn meanwhile): they are injected at the service. The
agent change form's Conflict and ValidationError are in tests/deployments/test_admin_refusals.py.
"""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from agentconfig.core import people
from agentconfig.core.errors import Conflict, Forbidden
from agentconfig.models import Agent, AuditRecord
from agentconfig.site import admin as agent_admin
from agentconfig.site import versions_admin
from tests import factories
from tests.factories import login
from versions.models import AgentVersion

ADD_AGENT = {"slug": "support-bot", "name": "Support bot", "description": ""}


def refusing(error: Exception):
    def service(**kwargs):
        raise error

    return service


def test_agent_change__service_forbids__200_refusal_on_the_form_nothing_saved(
    admin_client, agent, monkeypatch
):
    monkeypatch.setattr(agent_admin, "update_agent", refusing(Forbidden("bob may not rename.")))
    url = reverse("admin:agentconfig_agent_change", args=[agent.pk])

    response = admin_client.post(url, {"name": "Renamed", "description": ""})

    assert response.status_code == 200
    form = response.context["adminform"].form
    assert form.non_field_errors() == ["Nothing was saved: bob may not rename."]
    agent.refresh_from_db()
    assert agent.name != "Renamed"


def test_agent_add__service_conflict__error_on_the_form_nothing_created(
    admin_client, db, monkeypatch
):
    # Given another editor creates the same agent between the form's check and the save
    monkeypatch.setattr(
        agent_admin, "create_agent", refusing(Conflict("support-bot was created meanwhile."))
    )

    response = admin_client.post(reverse("admin:agentconfig_agent_add"), ADD_AGENT)

    assert response.status_code == 200
    assert response.context["adminform"].form.non_field_errors() == [
        "support-bot was created meanwhile."
    ]
    assert not Agent.objects.exists()


def test_agent_add__service_forbids__403_page_in_its_words_nothing_created(
    admin_client, db, monkeypatch
):
    monkeypatch.setattr(agent_admin, "create_agent", refusing(Forbidden("bob may not add.")))

    response = admin_client.post(reverse("admin:agentconfig_agent_add"), ADD_AGENT)

    assert response.status_code == 403
    assert "bob may not add." in response.content.decode()
    assert not Agent.objects.exists()


def test_new_version__service_conflict__409_refusal_on_the_form_nothing_created(
    admin_client, agent, monkeypatch
):
    version = factories.create_version(agent)
    monkeypatch.setattr(
        versions_admin, "create_version", refusing(Conflict("v2 was created at the same moment."))
    )
    url = reverse("admin:agentconfig_agent_new_version", args=[agent.pk])

    response = admin_client.post(
        url,
        {
            "system_prompt": "Something new.",
            "model": version.model,
            "temperature": "0.2",
            "max_tokens": "1024",
            "change_description": "New prompt.",
            "derived_from": str(version.pk),
        },
    )

    assert response.status_code == 409
    assert response.context["form"].non_field_errors() == ["v2 was created at the same moment."]
    assert "Something new." in response.content.decode()  # what was typed is kept
    assert AgentVersion.objects.count() == 1


@pytest.mark.parametrize(
    ("error", "status"),
    [(Conflict("carol was created meanwhile."), 409), (Forbidden("boss may not add."), 403)],
    ids=["conflict", "forbidden"],
)
def test_user_add__service_refuses__refusal_on_the_form_nothing_created(
    boss, monkeypatch, error, status
):
    monkeypatch.setattr(people, "create_user", refusing(error))

    response = login(boss).post(
        reverse("admin:auth_user_add"),
        {
            "username": "carol",
            "email": "carol@example.com",
            "usable_password": "false",
            "is_staff": "on",
            "reason": "joins billing",
            "_save": "Save",
        },
    )

    assert response.status_code == status
    assert response.context["adminform"].form.non_field_errors() == [error.message]
    assert not get_user_model().objects.filter(username="carol").exists()
    assert not AuditRecord.objects.exists()
