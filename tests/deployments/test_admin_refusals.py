"""A service's refusal on a stock admin change form is shown on the form, never a 500.

The agent and evaluation-suite change forms call their services from save_model
(agentconfig.core.admin_pages.ServiceChangeMixin). The services check what the forms
check, so a refusal there follows a race with another editor: it is injected here.
The page answers 200 with the form, what was typed and the service's words; nothing
is written.
"""

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from agentconfig.core.errors import Conflict
from agentconfig.site import admin as agent_admin
from evaluations.models import EvaluationSuite
from evaluations.services import suites as suite_services

AGENT_PERMISSIONS = ("agentconfig.view_agent", "agentconfig.change_agent")
SUITE_PERMISSIONS = ("evaluations.view_evaluationsuite", "evaluations.change_evaluationsuite")


def refusing(error):
    def service(**kwargs):
        raise error

    return service


@pytest.fixture
def suite(agent, system_actor) -> EvaluationSuite:
    return suite_services.create_suite(agent=agent, slug="smoke", name="Smoke", actor=system_actor)


def post_agent(client, agent, name):
    url = reverse("admin:agentconfig_agent_change", args=[agent.pk])
    return client.post(url, {"name": name, "description": agent.description})


def post_suite(client, suite, name):
    url = reverse("admin:evaluations_evaluationsuite_change", args=[suite.pk])
    return client.post(url, {"name": name, "description": suite.description})


def test_agent_change__service_conflict__200_refusal_on_the_form_nothing_saved(
    client_with_permissions, agent, monkeypatch
):
    monkeypatch.setattr(
        agent_admin, "update_agent", refusing(Conflict("someone else changed the agent meanwhile"))
    )
    name = agent.name

    response = post_agent(client_with_permissions(*AGENT_PERMISSIONS), agent, "Renamed")

    assert response.status_code == 200
    form = response.context["adminform"].form
    assert form.non_field_errors() == [
        "Nothing was saved: someone else changed the agent meanwhile"
    ]
    assert form["name"].value() == "Renamed"  # what was typed is kept
    agent.refresh_from_db()
    assert agent.name == name


def test_agent_change__service_validation_error__next_to_the_field_nothing_saved(
    client_with_permissions, agent, monkeypatch
):
    monkeypatch.setattr(
        agent_admin,
        "update_agent",
        refusing(ValidationError({"name": "is taken by another agent."})),
    )
    name = agent.name

    response = post_agent(client_with_permissions(*AGENT_PERMISSIONS), agent, "Renamed")

    assert response.status_code == 200
    assert response.context["adminform"].form.errors["name"] == ["is taken by another agent."]
    agent.refresh_from_db()
    assert agent.name == name


def test_suite_change__service_conflict__200_refusal_on_the_form_nothing_saved(
    client_with_permissions, suite, monkeypatch
):
    monkeypatch.setattr(
        suite_services, "update_suite", refusing(Conflict("the suite changed meanwhile"))
    )

    response = post_suite(client_with_permissions(*SUITE_PERMISSIONS), suite, "Renamed")

    assert response.status_code == 200
    form = response.context["adminform"].form
    assert form.non_field_errors() == ["Nothing was saved: the suite changed meanwhile"]
    suite.refresh_from_db()
    assert suite.name == "Smoke"


def test_suite_change__service_validation_error__next_to_the_field_nothing_saved(
    client_with_permissions, suite, monkeypatch
):
    monkeypatch.setattr(
        suite_services,
        "update_suite",
        refusing(ValidationError({"name": "is too long for the report."})),
    )

    response = post_suite(client_with_permissions(*SUITE_PERMISSIONS), suite, "Renamed")

    assert response.status_code == 200
    assert response.context["adminform"].form.errors["name"] == ["is too long for the report."]
    suite.refresh_from_db()
    assert suite.name == "Smoke"


def test_suite_change__service_accepts__saved(client_with_permissions, suite):
    # The same page without a refusal: the change is saved (the refusal tests' baseline).
    response = post_suite(client_with_permissions(*SUITE_PERMISSIONS), suite, "Renamed")

    assert response.status_code == 302
    suite.refresh_from_db()
    assert suite.name == "Renamed"
