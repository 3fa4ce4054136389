"""The audit timeline page of an agent, its environment filter and "What was live?"."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from agentconfig.core.actors import Actor
from deployments.services.releases import deploy_version, rollback
from tests import factories
from tests.factories import login, member

SCRIPT = '<script>alert("x")</script>'
OPS = Actor.system("ops")


@pytest.fixture
def story(agent, production, staging):
    """v1 and v2 live in production (v2 by request), v3 by break glass, then a rollback."""
    editor = member("ed", "Editors")
    reviewer = member("rev", "Reviewers")
    v1, v2, v3 = (factories.create_version(agent) for _ in range(3))
    factories.deploy(v1, staging)
    factories.deploy(v1, production)
    factories.deploy_by_request(
        v2,
        production,
        requested_by=Actor.of(editor),
        reviewed_by=Actor.of(reviewer),
        reason=f"billing restored {SCRIPT}",
        comment=f"ok {SCRIPT}",
        applied_by=OPS,
    )
    deploy_version(
        agent=agent,
        environment=production,
        version=v3,
        actor=OPS,
        reason="hotfix",
        break_glass="INC-4711 refunds broken",
    )
    rollback(agent=agent, environment=production, actor=OPS, reason="v3 rude")
    return agent


def _url(agent, **query) -> str:
    url = reverse("admin:agentconfig_agent_timeline", args=[agent.pk])
    return f"{url}?{'&'.join(f'{k}={v}' for k, v in query.items())}" if query else url


@pytest.fixture
def viewer(db):
    return login(member("rev2", "Reviewers"))


def test_timeline__all_environments__newest_first_with_who_what_why_and_diff_links(story, viewer):
    response = viewer.get(_url(story))

    assert response.status_code == 200
    entries = response.context["entries"]
    times = [entry.event.at for entry in entries]
    assert times == sorted(times, reverse=True)
    content = response.content.decode()
    assert "Rolled back from v3 to v2" in content
    assert "by <strong>ops</strong>" in content
    assert "v3 rude" in content
    assert reverse("admin:versions_agentversion_compare", args=[story.slug, "3...2"]) in content
    assert any(entry.event.kind == "version" for entry in entries)


def test_timeline__break_glass__prominent_with_a_label_not_colour_alone(story, viewer):
    response = viewer.get(_url(story, environment="production"))

    # (the fixture's first deploy breaks the glass too: tests set up releases that way)
    alerts = {entry.title: entry.alert for entry in response.context["entries"] if entry.alert}
    assert alerts["Deployed v3 (was v2): INC-4711 refunds broken"] == "Break glass"
    content = response.content.decode()
    assert 'class="ac-event ac-event-release ac-event-alert"' in content
    assert '<span aria-hidden="true">⚠</span> Break glass</span>' in content
    assert "INC-4711 refunds broken" in content


def test_timeline__environment_filter__only_that_environment(story, viewer):
    staging = viewer.get(_url(story, environment="staging"))
    production = viewer.get(_url(story, environment="production"))

    assert {e.event.environment for e in staging.context["entries"]} == {"staging"}
    assert {e.event.environment for e in production.context["entries"]} == {"production"}
    assert len(staging.context["entries"]) == 1
    assert 'aria-current="page">Staging</a>' in staging.content.decode()


def test_timeline__unknown_environment__404(story, viewer):
    assert viewer.get(_url(story, environment="moon")).status_code == 404


def test_timeline__script_in_reason_and_comment__escaped(story, viewer):
    content = viewer.get(_url(story)).content.decode()

    assert SCRIPT not in content
    assert "billing restored &lt;script&gt;" in content
    assert "ok &lt;script&gt;" in content


def test_timeline__staff_without_release_log_permission__403(story, client_with_permissions):
    client = client_with_permissions("agentconfig.view_agent")

    response = client.get(_url(story))

    assert response.status_code == 403
    assert "deployments.view_releaselogentry" in response.content.decode()


def test_timeline__many_events__queries_do_not_grow(agent, production, viewer):
    # Given one release, then forty more back and forth
    v1, v2 = factories.create_version(agent), factories.create_version(agent)
    factories.deploy(v1, production)
    with CaptureQueriesContext(connection) as few:
        viewer.get(_url(agent))
    for _ in range(20):
        factories.deploy(v2, production)
        factories.deploy(v1, production)

    # When
    with CaptureQueriesContext(connection) as many:
        response = viewer.get(_url(agent))

    # Then: the same queries (session, user, permissions, agent, environments, and each
    # source of events once), whatever the number of events
    assert len(response.context["entries"]) == 43
    assert len(many) == len(few) <= 16


def test_agent_page__timeline_linked(story, viewer):
    content = viewer.get(reverse("admin:agentconfig_agent_change", args=[story.pk])).content

    assert _url(story).encode() in content


# --- What was live? -------------------------------------------------------------------------


def test_what_was_live__moment_and_user__answer_as_the_endpoint_gives_it(agent, production, viewer):
    # Given v1 went live, then v2 a moment later
    v1, v2 = factories.create_version(agent), factories.create_version(agent)
    factories.deploy(v1, production)
    between = timezone.now()
    factories.deploy(v2, production)
    at = between.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")

    # When the form asks what user u-1 got at that moment
    response = viewer.get(
        _url(agent, **{"live-environment": "production", "live-user_id": "u-1", "live-at": at})
    )

    # Then the page answers v1 and links the same question on the runtime endpoint
    live = response.context["live"]
    assert live.payload["version"]["id"] == str(v1.pk)
    assert live.payload["track"] == "stable"
    assert v1.system_prompt in response.content.decode()
    assert live.api_url.startswith(reverse("runtime-config", args=[agent.slug]))
    api = viewer.get(live.api_url)
    assert api.status_code == 200
    assert api.json()["version"]["id"] == str(v1.pk)


def test_what_was_live__before_any_deploy__says_so(agent, production, viewer):
    factories.deploy(factories.create_version(agent), production)

    response = viewer.get(
        _url(agent, **{"live-environment": "production", "live-at": "2001-01-01T00:00"})
    )

    assert response.context["live"].error.startswith("agent 'support-bot' had no version")
    assert "had no version deployed" in response.content.decode()


@pytest.mark.parametrize(
    ("at", "message"), [("yesterday", "Enter a valid date/time"), ("2999-01-01T00:00", "future")]
)
def test_what_was_live__bad_moment__message_and_no_answer(agent, production, viewer, at, message):
    response = viewer.get(_url(agent, **{"live-environment": "production", "live-at": at}))

    assert response.status_code == 200
    assert response.context["live"] is None
    assert message in response.content.decode()
