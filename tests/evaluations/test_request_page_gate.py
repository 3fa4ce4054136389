"""The evaluation gate on a deployment request's page: verdict, runs side by side, override."""

from __future__ import annotations

import pytest
from django.urls import reverse

from agentconfig.core.actors import Actor
from deployments.services import requests
from evaluations.models import GateOverride
from tests import factories
from tests.evaluations.helpers import (
    require_evaluation,
    stable_and_candidate,
)
from tests.factories import login, member


@pytest.fixture
def regressed(agent, production, eval_settings, llm):
    """v1 stable in production scoring 1.0; v2 scoring 0.5; an open request for v2."""
    _, candidate, _ = stable_and_candidate(agent, production, llm, candidate_yes=2)
    require_evaluation(production, tolerance=0.1)
    editor = member("ed", "Editors")
    return requests.create_request(
        agent=agent,
        environment=production,
        version=candidate,
        actor=Actor.of(editor),
        reason="shorter answers",
    )


def _url(request, action: str = "change") -> str:
    return reverse(f"admin:deployments_deploymentrequest_{action}", args=[request.pk])


@pytest.fixture
def gatekeeper(db):
    return member("gk", "Reviewers", permissions=("evaluations.override_gate",))


def test_request_page__evaluation_regression__verdict_runs_side_by_side_regressions_first(
    regressed, gatekeeper
):
    response = login(gatekeeper).get(_url(regressed))

    assert response.status_code == 200
    assert response.context["gate"].title == "evaluation regression"
    rows = response.context["comparison"]["rows"]
    assert [row["change"] for row in rows][:2] == ["regression", "regression"]
    content = response.content.decode()
    assert "Evaluation regression" in content
    assert "Blocked by the evaluation gate" in content
    assert 'id="override_gate_form"' in content


def test_override_gate__reason__recorded_and_page_shows_overridden(regressed, gatekeeper):
    client = login(gatekeeper)

    response = client.post(_url(regressed, "override_gate"), {"reason": "judge is too strict"})

    assert response.status_code == 302
    override = GateOverride.objects.get()
    assert (override.actor, override.reason) == (gatekeeper, "judge is too strict")
    page = client.get(response.url)
    assert page.context["gate"].allowed
    assert "overridden (evaluation regression)" in page.content.decode().lower()
    assert 'id="override_gate_form"' not in page.content.decode()


def test_override_gate__missing_reason__message_and_nothing_recorded(regressed, gatekeeper):
    response = login(gatekeeper).post(_url(regressed, "override_gate"), {"reason": " "})

    assert response.status_code == 200
    assert "is required: say why" in response.content.decode()
    assert not GateOverride.objects.exists()


def test_override_gate__reviewer_without_override_permission__403_and_no_form(regressed):
    # A reviewer holding only the review permission (the Reviewers group may override).
    client = login(
        factories.user_with(
            "deployments.review_deploymentrequest",
            "deployments.view_deploymentrequest",
            "agentconfig.view_agent",
            "versions.view_agentversion",
            username="rev",
            is_staff=True,
        )
    )

    page = client.get(_url(regressed)).content.decode()
    response = client.post(_url(regressed, "override_gate"), {"reason": "let it go"})

    assert 'id="override_gate_form"' not in page
    assert response.status_code == 403
    assert "evaluations.override_gate" in response.content.decode()
    assert not GateOverride.objects.exists()


def test_apply__approved_but_gate_refuses__refusal_shown_and_nothing_moves(regressed, production):
    requests.approve_request(
        request=regressed, actor=Actor.of(member("rev", "Reviewers")), comment="diff is fine"
    )
    client = login(member("dep", "Deployers"))

    page = client.get(_url(regressed)).content.decode()
    response = client.post(
        _url(regressed, "apply"), {"expected_active": str(regressed.base_version_id)}
    )

    assert 'id="apply_form"' not in page
    assert response.status_code == 409
    assert "Not applied: evaluation regression" in response.content.decode()
    assert production.pointers.get().stable_version == regressed.base_version
