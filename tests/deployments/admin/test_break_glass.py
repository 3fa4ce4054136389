"""Break glass in the admin: only for its permission, a reason, a diff, then recorded in red."""

from __future__ import annotations

import pytest
from django.urls import reverse

from deployments.models import ReleaseLogEntry
from deployments.selectors import get_pointer
from tests import factories
from tests.factories import login


def _url(name: str, agent, environment: str = "production") -> str:
    return reverse(f"admin:agentconfig_agent_{name}", args=[agent.pk, environment])


def _active(agent, environment) -> int:
    return get_pointer(agent, environment).stable_version.version_number


def _data(version, **overrides) -> dict[str, str]:
    return {
        "version": str(version.pk),
        "emergency": "INC-4711: refunds answered wrongly",
        "reason": "hotfix the refund paragraph",
        **overrides,
    }


def test_break_glass__holder__form_diff_then_deployed_and_recorded(live, people, production):
    # Given
    v1, v2 = live
    client = login(people["firefighter"])
    assert client.get(_url("break_glass", v1.agent)).status_code == 200

    # When the form is posted, the red confirmation shows the diff and writes nothing
    confirmation = client.post(_url("break_glass", v1.agent), _data(v2))
    assert confirmation.status_code == 200
    assert (confirmation.context["version_diff"].old, confirmation.context["version_diff"].new) == (
        v1,
        v2,
    )
    assert "ac-danger-zone" in confirmation.content.decode()
    assert _active(v1.agent, production) == 1

    # And when it is confirmed
    applied = client.post(
        confirmation.context["apply_url"], {**_data(v2), "expected_active": str(v1.pk)}
    )

    # Then v2 is live and the release log records the emergency
    assert applied.status_code == 302
    assert _active(v1.agent, production) == 2
    entry = ReleaseLogEntry.objects.filter(environment=production).first()
    assert entry.details["break_glass"] == "INC-4711: refunds answered wrongly"
    assert entry.reason == "hotfix the refund paragraph"
    assert entry.actor == people["firefighter"]
    timeline = client.get(reverse("admin:agentconfig_agent_timeline", args=[v1.agent.pk]))
    assert "Break glass</span>" in timeline.content.decode()


@pytest.mark.parametrize("missing", ["emergency", "reason"])
def test_break_glass__missing_text__message_and_nothing_deployed(live, people, production, missing):
    v1, v2 = live

    response = login(people["firefighter"]).post(
        _url("break_glass_apply", v1.agent),
        {**_data(v2, **{missing: " "}), "expected_active": str(v1.pk)},
    )

    assert response.status_code == 200
    assert "is required" in response.content.decode()
    assert _active(v1.agent, production) == 1


def test_break_glass__deployer_without_permission__not_offered_and_refused(
    live, production, people
):
    # Given a deployer without deployments.break_glass
    v1, v2 = live
    client = login(people["deployer"])

    # When
    agent_page = client.get(reverse("admin:agentconfig_agent_change", args=[v1.agent.pk]))
    responses = [
        client.get(_url("break_glass", v1.agent)),
        client.post(_url("break_glass", v1.agent), _data(v2)),
        client.post(_url("break_glass_apply", v1.agent), {**_data(v2), "expected_active": ""}),
    ]

    # Then there is no button, and every page refuses, naming the permission
    assert "Break glass" not in agent_page.content.decode()
    assert [r.status_code for r in responses] == [403, 403, 403]
    assert "deployments.break_glass" in responses[2].content.decode()
    assert _active(v1.agent, production) == 1
    assert not ReleaseLogEntry.objects.filter(details__has_key="break_glass").exclude(
        details__break_glass=factories.SETUP_BREAK_GLASS
    )


def test_break_glass_apply__get__405(live, people, production):
    response = login(people["firefighter"]).get(
        _url("break_glass_apply", live[0].agent), _data(live[1])
    )

    assert response.status_code == 405
    assert _active(live[0].agent, production) == 1


def test_break_glass_apply__active_version_moved__confirmation_again(live, people, production):
    v1, v2 = live
    v3 = factories.create_version(v1.agent)
    factories.deploy(v3, production)

    response = login(people["firefighter"]).post(
        _url("break_glass_apply", v1.agent), {**_data(v2), "expected_active": str(v1.pk)}
    )

    assert response.status_code == 200
    assert "changed to v3 while you were reviewing" in response.content.decode()
    assert _active(v1.agent, production) == 3
