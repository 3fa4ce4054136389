"""agentconfig.audit: one timeline of everything that changed what an agent's users get."""

from agentconfig.actors import Actor
from agentconfig.audit import list_audit_events
from deployments import requests
from deployments.services import deploy_version, rollback
from flags import services as flag_services
from tests import factories
from tests.flags.helpers import make_flag, turn_on


def test_timeline__full_story__newest_first_with_who_what_why(agent, production, staging):
    # Given a version, a request with a review, a release, a break-glass deploy,
    # a rollback and a flag kill switch
    editor = Actor.of(factories.user_with("deployments.add_deploymentrequest", username="ed"))
    reviewer = Actor.of(factories.user_with("deployments.review_deploymentrequest", username="rev"))
    v1, v2, v3 = (factories.create_version(agent) for _ in range(3))
    factories.deploy(v1, production)
    request = requests.create_request(
        agent=agent, environment=production, version=v2, actor=editor, reason="fix billing"
    )
    requests.approve_request(request=request, actor=reviewer, comment="paragraph is back")
    requests.apply_request(request=request, actor=Actor.system("ops"))
    deploy_version(
        agent=agent,
        environment=production,
        version=v3,
        actor=Actor.system("ops"),
        reason="hotfix",
        break_glass="pager 4711",
    )
    rollback(agent=agent, environment=production, actor=Actor.system("ops"), reason="v3 bad")
    flag = make_flag("refunds", agent=agent)
    turn_on(flag, production)
    flag_services.kill_flag(
        flag=flag, environment=production, actor=Actor.system("ops"), reason="bug"
    )
    factories.deploy(v1, staging)

    # When the production timeline is read
    events = list_audit_events(agent, environment="production")

    # Then every kind of event is there, newest first, break glass marked
    assert [e.at for e in events] == sorted((e.at for e in events), reverse=True)
    titles = [e.title for e in events]
    assert any(t.startswith("Flag refunds: off") for t in titles)
    assert "Rolled back from v3 to v2" in titles
    assert any(t.startswith("BREAK GLASS — Deployed v3") for t in titles)
    assert any(e.prominent and "BREAK GLASS" in e.title for e in events)
    assert f"Approved request #{request.pk} (v2)" in titles
    assert any(t.startswith("Requested deploying v2") for t in titles)
    assert all(e.environment in (None, "production") for e in events)
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


def test_timeline__query_count_does_not_grow_with_events(
    agent, production, django_assert_max_num_queries
):
    for _ in range(15):
        factories.deploy(factories.create_version(agent), production)

    with django_assert_max_num_queries(8):
        events = list_audit_events(agent)

    assert len(events) >= 30
