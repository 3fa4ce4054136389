"""agentconfig.site.timeline: one timeline of everything that changed what an agent's users get."""

import datetime as dt
import random

from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from agentconfig.core import people
from agentconfig.core.actors import Actor
from agentconfig.site.timeline import compare_url, list_audit_events
from deployments.models import CanaryStatus, RequestKind
from deployments.services import canaries, requests
from deployments.services import environments as environment_services
from deployments.services.canaries import evaluate_canary
from deployments.services.releases import deploy_version, rollback
from flags.services import flags as flag_services
from tests import factories
from tests.deployments.canary_helpers import report, start
from tests.flags.helpers import gate, make_flag, set_rules, turn_on

OPS = Actor.system("ops")
SCRIPT = '<script>alert("x")</script>'


def test_timeline__full_story__newest_first_with_who_what_why(agent, production, staging):
    # Given a version, a request with a review, a release, a break-glass deploy,
    # a rollback and a flag kill switch
    editor = Actor.of(factories.user_with("deployments.add_deploymentrequest", username="ed"))
    reviewer = Actor.of(factories.user_with("deployments.review_deploymentrequest", username="rev"))
    v1, v2, v3 = (factories.create_version(agent) for _ in range(3))
    factories.deploy(v1, production)
    request = factories.deploy_by_request(
        v2,
        production,
        requested_by=editor,
        reviewed_by=reviewer,
        reason="fix billing",
        comment="paragraph is back",
        applied_by=OPS,
    )
    deploy_version(
        agent=agent,
        environment=production,
        version=v3,
        actor=OPS,
        reason="hotfix",
        break_glass="pager 4711",
    )
    rollback(agent=agent, environment=production, actor=OPS, reason="v3 bad")
    flag = make_flag("refunds", agent=agent)
    turn_on(flag, production)
    flag_services.kill_flag(flag=flag, environment=production, actor=OPS, reason="bug")
    factories.deploy(v1, staging)

    # When the production timeline is read
    events = list_audit_events(agent, environment="production")

    # Then every kind of event is there, newest first, break glass and kill switch marked
    assert [e.at for e in events] == sorted((e.at for e in events), reverse=True)
    titles = [e.title for e in events]
    kill = next(e for e in events if e.title.startswith("Kill switch: flag refunds turned off"))
    assert (kill.alert, kill.actor, kill.detail) == ("Kill switch", "ops", "Kill switch: bug")
    assert [(c.name, c.before, c.after) for c in kill.changes] == [("state", "on", "off")]
    assert "Rolled back from v3 to v2" in titles
    assert any(t.startswith("BREAK GLASS — Deployed v3") for t in titles)
    assert any(e.alert == "Break glass" and "BREAK GLASS" in e.title for e in events)
    assert f"Approved request #{request.pk} (v2)" in titles
    assert any(t.startswith("Requested deploying v2") for t in titles)
    assert all(e.environment == "production" or e.all_environments for e in events)
    review = next(e for e in events if e.kind == "review")
    assert (review.actor, review.detail) == ("rev", "paragraph is back")
    release = next(e for e in events if e.title == "Rolled back from v3 to v2")
    assert release.link.endswith("/compare/support-bot/3...2/")


def test_timeline__all_environments__includes_version_creation(agent, staging):
    factories.create_version(agent, change_description="first")
    factories.deploy(factories.create_version(agent, change_description="second"), staging)

    events = list_audit_events(agent)

    assert [e.title for e in events if e.kind == "version"] == [
        "Created v2 (command line)",
        "Created v1 (command line)",
    ]
    assert any(e.environment == "staging" for e in events)


def test_compare_url__from_nothing__the_version_page_not_a_404(agent, admin_client):
    v1 = factories.create_version(agent)

    url = compare_url(agent, None, v1)

    assert url == reverse("admin:versions_agentversion_change", args=[v1.pk])
    assert admin_client.get(url).status_code == 200


def test_timeline__first_deploy_and_first_version__link_to_the_version(
    agent, staging, admin_client
):
    # Given v1, deployed to an empty environment
    v1 = factories.create_version(agent)
    v2 = factories.create_version(agent)
    factories.deploy(v1, staging)

    # When
    events = list_audit_events(agent)

    # Then nothing links to a comparison with "nothing" (there is none): every link opens
    links = {e.title: e.link for e in events}
    version_page = reverse("admin:versions_agentversion_change", args=[v1.pk])
    assert links["Deployed v1 (was nothing)"] == version_page
    assert links["Created v1 (command line)"] == version_page
    assert links["Created v2 (command line)"].endswith("/compare/support-bot/previous...2/")
    assert v2.version_number == 2
    for link in links.values():
        assert admin_client.get(link).status_code == 200, link


def test_timeline__request_for_a_global_flag__on_every_agents_timeline(agent, production):
    # Given a global flag whose change in production needs a request, and a review of it
    other = factories.create_agent(slug="billing-bot")
    editor = factories.user_with("flags.change_flag", "deployments.add_deploymentrequest")
    reviewer = factories.user_with("deployments.review_deploymentrequest", username="rev")
    flag = make_flag("refunds")
    change = {"op": "set_enabled", "flag": "refunds", "environment": "production", "enabled": True}
    request = requests.propose_change(
        kind=RequestKind.FLAG,
        environment=production,
        proposal={"change": change},
        actor=Actor.of(editor),
        reason="launch refunds",
    )
    requests.approve_request(request=request, actor=Actor.of(reviewer), comment="go")

    # When
    timelines = [list_audit_events(a, environment="production") for a in (agent, other)]

    # Then both agents' timelines have the request and its review, described by its summary
    assert request.agent is None and flag.agent is None
    for events in timelines:
        titles = [e.title for e in events]
        assert (
            f"Requested a flag change: turn refunds on in production (request #{request.pk})"
            in titles
        )
        assert f"Approved request #{request.pk} (turn refunds on in production)" in titles


def test_timeline__settings_request__on_every_agents_timeline(agent, production, root):
    other = factories.create_agent(slug="billing-bot")
    admin = root

    request = requests.propose_change(
        kind=RequestKind.SETTINGS,
        environment=production,
        proposal={"required_approvals": 0},
        actor=Actor.of(admin),
        reason="night releases",
    )

    for each in (agent, other):
        [event] = [e for e in list_audit_events(each) if e.kind == "request"]
        assert event.title == (
            f"Requested a settings change: required approvals 1 → 0 (request #{request.pk})"
        )
        assert (event.actor, event.detail, event.environment) == (
            "root",
            "night releases",
            "production",
        )
        assert event.link == reverse(
            "admin:deployments_deploymentrequest_change", args=[request.pk]
        )


def test_timeline__another_agents_flag_and_gate__not_on_this_timeline(agent, production):
    # Given a flag scoped to another agent, gating one of its tools
    other = factories.create_agent(slug="billing-bot")
    flag = make_flag("billing-only", agent=other)
    set_rules(flag, production, [{"users": ["ana"], "variant": "on"}])
    gate(other, "refund", flag)

    # When / Then: the other agent sees all of it, this one nothing
    assert {e.kind for e in list_audit_events(other)} >= {"flag", "gate"}
    assert [e for e in list_audit_events(agent) if e.kind in ("flag", "gate")] == []


def test_timeline__environment_filter__keeps_changes_to_every_environment(
    agent, production, staging
):
    # Given a tool gate (every environment), a key in staging and a person's new roles
    flag = make_flag("refunds")
    gate(agent, "lookup_order", flag)
    factories.create_api_key(environment=staging, name="staging-runtime")
    carol = get_user_model().objects.create_user("carol")
    people.set_roles(
        user=carol, groups=["Editors"], is_staff=True, is_superuser=False, actor=OPS, reason="x"
    )

    # When
    production_titles = [e.title for e in list_audit_events(agent, environment="production")]
    staging_titles = [e.title for e in list_audit_events(agent, environment="staging")]

    # Then
    for titles in (production_titles, staging_titles):
        assert "Gated the tool lookup_order behind flag refunds" in titles
        assert "Changed the roles of carol" in titles
    assert "Created API key staging-runtime" in staging_titles
    assert "Created API key staging-runtime" not in production_titles


def test_timeline__automatic_rollback__once_as_the_release_it_made(agent, production):
    # Given a canary that fails clearly, judged by the analysis
    environment_services.set_canary_policy(
        environment=production,
        values={
            **environment_services.canary_policy_values(canaries.get_policy(production)),
            "bake_minutes": 0,
        },
        actor=OPS,
        reason="quick judgement in tests",
    )
    v1, v2 = factories.create_version(agent), factories.create_version(agent)
    factories.deploy(v1, production)
    rollout = start(v2, production, percent="50")
    now = rollout.step_started_at + dt.timedelta(minutes=1)
    users = [f"user-{i}" for i in range(2000)]
    report(production, agent.slug, users, {"stable": 0.02, "canary": 0.5}, random.Random(1), now)

    evaluate_canary(rollout, now=now)

    # Then the rollback is one event, by the analysis, with its explanation as the why
    rollout.refresh_from_db()
    assert rollout.status == CanaryStatus.ROLLED_BACK
    events = [e for e in list_audit_events(agent) if "canary" in e.title.lower()]
    rollbacks = [e for e in events if "rolled back" in e.title]
    assert [e.title for e in rollbacks] == ["Canary analysis: rolled back the canary of v2"]
    assert rollbacks[0].alert == "Automatic rollback"
    assert rollbacks[0].actor == "canary analysis"
    assert "worse" in rollbacks[0].detail


def test_timeline__window_cut_at_limit__before_values_still_known(agent, production, staging):
    # Given a flag whose staging rules changed three times
    flag = make_flag("refunds")
    for users in (["a"], ["a", "b"], ["a", "b", "c"]):
        set_rules(flag, staging, [{"users": users, "variant": "on"}], reason=f"{len(users)}")

    # When only the newest event is read
    [event] = list_audit_events(agent, limit=1)

    # Then its before comes from the row outside the window
    [rules] = [c for c in event.changes if c.name == "rules"]
    assert '"users": ["a", "b"]' in rules.before
    assert '"users": ["a", "b", "c"]' in rules.after


def _one_of_each(agent, production, staging, flag, index: int) -> None:
    factories.deploy(factories.create_version(agent), production)
    set_rules(flag, staging, [{"users": [f"u{index}"], "variant": "on"}])
    gate(agent, f"tool_{index}", flag)
    factories.create_api_key(environment=production, name=f"key-{index}")
    requests.create_request(
        agent=agent,
        environment=production,
        version=factories.create_version(agent),
        actor=OPS,
        reason="r",
    )


def test_timeline__query_count_does_not_grow_with_events(agent, production, staging):
    # Given every source of events once
    flag = make_flag("refunds")
    _one_of_each(agent, production, staging, flag, 0)
    with CaptureQueriesContext(connection) as few:
        list_audit_events(agent)

    # When there are many of each
    for index in range(1, 8):
        _one_of_each(agent, production, staging, flag, index)
    with CaptureQueriesContext(connection) as many:
        events = list_audit_events(agent)

    # Then one query per source (versions, requests, reviews, releases, flags, flag
    # states, tool gates, audit records, gate overrides), whatever the number of events
    assert len(events) > 50
    assert len(many) == len(few) == 9


def test_timeline_page__before_and_after__shown_and_escaped(agent, production, admin_client):
    # Given a string flag whose variant value holds markup, then changed
    flag = flag_services.create_flag(
        key="tone",
        kind="string",
        actor=OPS,
        agent=agent,
        variants=[{"name": "plain", "value": SCRIPT}, {"name": "warm", "value": "warm"}],
    )
    flag_services.update_flag(
        flag=flag,
        actor=OPS,
        description="",
        owner="",
        variants=[{"name": "plain", "value": "plain"}, {"name": "warm", "value": "warm"}],
        reason=f"no markup {SCRIPT}",
        break_glass="test setup",
    )

    # When
    response = admin_client.get(reverse("admin:agentconfig_agent_timeline", args=[agent.pk]))

    # Then
    content = response.content.decode()
    assert response.status_code == 200
    assert SCRIPT not in content
    assert "&lt;script&gt;alert(\\&quot;x\\&quot;)&lt;/script&gt;" in content
    assert 'aria-label="What changed"' in content
    assert '<span class="ac-badge">all environments</span>' in content
