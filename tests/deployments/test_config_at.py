"""`?at=`: what exactly was live for a user at a moment in the past."""

import pytest
from django.urls import reverse
from django.utils import timezone

from agentconfig.core.actors import Actor
from deployments.services import canaries
from deployments.services.releases import rollback
from flags.services import flags as flag_services
from tests import factories
from tests.deployments.canary_helpers import start
from tests.factories import SETUP_BREAK_GLASS
from tests.flags.helpers import make_flag, set_rules, turn_on

OPS = Actor.system("ops")


def at(client, when, key=None, **query):
    headers = {"HTTP_AUTHORIZATION": f"Bearer {key}"} if key else {}
    query["at"] = when.isoformat()
    return client.get(reverse("runtime-config", args=["support-bot"]), query, **headers)


@pytest.fixture
def story(agent, production):
    """v1 live, then v2, then a canary of v3 at 30 % then 60 %, then rolled back."""
    times = {"before": timezone.now()}
    v1, v2, v3 = (factories.create_version(agent) for _ in range(3))
    factories.deploy(v1, production)
    times["v1"] = timezone.now()
    factories.deploy(v2, production)
    times["v2"] = timezone.now()
    start(v3, production, percent="30")
    times["canary30"] = timezone.now()
    canaries.set_canary_percent(
        agent=agent, environment=production, percent="60", actor=OPS, reason="grow"
    )
    times["canary60"] = timezone.now()
    rollback(agent=agent, environment=production, actor=OPS, reason="bad")
    rollback(agent=agent, environment=production, actor=OPS, reason="back to v1")
    times["rolled_back"] = timezone.now()
    return times, (v1, v2, v3)


def test_config_at__each_moment__the_version_that_was_live(client, story, api_key):
    times, (v1, v2, _) = story

    assert at(client, times["v1"], api_key).json()["version"]["id"] == str(v1.id)
    assert at(client, times["v2"], api_key).json()["version"]["id"] == str(v2.id)
    assert at(client, times["rolled_back"], api_key).json()["version"]["id"] == str(v1.id)
    assert at(client, times["before"], api_key).json()["error"]["code"] == "not_deployed"


def test_config_at__during_canary__same_routing_and_percentage_as_then(client, story, api_key):
    times, _ = story
    users = [f"user-{i}" for i in range(300)]

    def share(when):
        tracks = [at(client, when, api_key, user_id=u).json()["track"] for u in users]
        return tracks.count("canary") / len(users)

    at30, at60 = share(times["canary30"]), share(times["canary60"])
    assert 0.2 < at30 < 0.4 and 0.5 < at60 < 0.7
    assert share(times["rolled_back"]) == 0


def test_config_at__flags_as_they_were(client, agent, production, api_key):
    version = factories.create_version(agent, tools=["lookup_order", "refunds"])
    factories.deploy(version, production)
    flag = make_flag("refunds-tool", agent=agent)
    set_rules(flag, production, [{"users": ["u-1"], "variant": "on"}], default_variant="off")
    flag_services.create_tool_gate(
        agent=agent, tool_name="refunds", flag=flag, actor=OPS, break_glass=SETUP_BREAK_GLASS
    )
    turn_on(flag, production)
    while_on = timezone.now()
    flag_services.kill_flag(flag=flag, environment=production, actor=OPS, reason="bug")
    after_kill = timezone.now()

    assert at(client, while_on, api_key, user_id="u-1").json()["config"]["tools"] == [
        "lookup_order",
        "refunds",
    ]
    assert at(client, after_kill, api_key, user_id="u-1").json()["config"]["tools"] == [
        "lookup_order"
    ]


def test_config_at__signed_in_user_with_permission__reads_environment(client, story):
    times, (v1, _, _) = story
    client.force_login(factories.user_with("deployments.view_releaselogentry"))

    body = at(client, times["v1"], environment="production").json()

    assert body["version"]["id"] == str(v1.id)


def test_config_at__signed_in_without_permission__403(client, story):
    times, _ = story
    client.force_login(factories.UserFactory())

    assert at(client, times["v1"], environment="production").status_code == 403


@pytest.mark.parametrize("value", ["yesterday", "2026-09-03T14:02:00", "2999-01-01T00:00:00Z"])
def test_config_at__bad_or_future_time__400(client, story, api_key, value):
    response = client.get(
        reverse("runtime-config", args=["support-bot"]),
        {"at": value},
        HTTP_AUTHORIZATION=f"Bearer {api_key}",
    )

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_at"


def test_config_at__no_credentials__401(client, story):
    times, _ = story

    assert at(client, times["v1"]).status_code == 401
