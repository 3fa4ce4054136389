"""Deployment requests and approvals: every rule, at the service level."""

import pytest
from django.core.exceptions import ValidationError

from agentconfig.core.actors import Actor
from agentconfig.core.errors import Conflict, Forbidden
from deployments.models import (
    CanaryRollout,
    DeploymentRequest,
    Pointer,
    ReleaseKind,
    ReleaseLogEntry,
    RequestStatus,
)
from deployments.services import requests
from deployments.services.releases import deploy_version, rollback
from tests import factories

REQUEST = "deployments.add_deploymentrequest"
REVIEW = "deployments.review_deploymentrequest"
DEPLOY = "deployments.deploy_version"


def ask(version, environment, actor, **options):
    options.setdefault("reason", "billing paragraph restored")
    return requests.create_request(
        agent=version.agent, environment=environment, version=version, actor=actor, **options
    )


def test_create_request__editor__open_with_base_version(live, production, people):
    v1, v2 = live

    request = ask(v2, production, Actor.of(people["editor"]))

    assert request.status == RequestStatus.OPEN
    assert (request.base_version, request.requested_by_label) == (v1, "editor")


def test_create_request__without_permission__forbidden(live, production, people):
    with pytest.raises(Forbidden, match="add_deploymentrequest"):
        ask(live[1], production, Actor.of(people["reviewer"]))
    assert not DeploymentRequest.objects.exists()


def test_create_request__same_target_twice__conflict(live, production, people):
    ask(live[1], production, Actor.of(people["editor"]))

    with pytest.raises(Conflict, match="already exists"):
        ask(live[1], production, Actor.of(people["editor"]))


def test_create_request__canary_without_plan__field_error(live, production, people):
    with pytest.raises(ValidationError) as excinfo:
        ask(live[1], production, Actor.of(people["editor"]), kind="canary")

    assert "canary_plan" in excinfo.value.message_dict


def test_approve_request__own_request__refused_even_with_every_permission(live, production, people):
    request = ask(live[1], production, Actor.of(people["all_in_one"]))

    with pytest.raises(Forbidden, match="cannot review your own request"):
        requests.approve_request(
            request=request, actor=Actor.of(people["all_in_one"]), comment="lgtm"
        )
    assert not request.reviews.exists()


def test_approve_request__without_review_permission__forbidden(live, production, people):
    request = ask(live[1], production, Actor.of(people["editor"]))

    with pytest.raises(Forbidden, match="review_deploymentrequest"):
        requests.approve_request(request=request, actor=Actor.of(people["deployer"]), comment="ok")


def test_approve_request__blank_comment__field_error(live, production, people):
    request = ask(live[1], production, Actor.of(people["editor"]))

    with pytest.raises(ValidationError) as excinfo:
        requests.approve_request(request=request, actor=Actor.of(people["reviewer"]), comment=" ")

    assert "comment" in excinfo.value.message_dict


def test_approve_request__twice_by_same_reviewer__conflict(live, production, people):
    request = ask(live[1], production, Actor.of(people["editor"]))
    requests.approve_request(request=request, actor=Actor.of(people["reviewer"]), comment="ok")

    with pytest.raises(Conflict, match="already reviewed"):
        requests.approve_request(
            request=request, actor=Actor.of(people["reviewer"]), comment="again"
        )


def test_apply_request__approved__deploys_with_request_in_log(live, production, people):
    request = ask(live[1], production, Actor.of(people["editor"]))
    requests.approve_request(
        request=request, actor=Actor.of(people["reviewer"]), comment="diff read"
    )

    entry = requests.apply_request(request=request, actor=Actor.of(people["deployer"]))

    assert Pointer.objects.get(environment=production).stable_version == live[1]
    assert entry.request == request and entry.details == {}
    assert entry.actor_label == "deployer"
    request.refresh_from_db()
    assert request.status == RequestStatus.APPLIED


def test_apply_request__not_approved__forbidden_and_nothing_moves(live, production, people):
    request = ask(live[1], production, Actor.of(people["editor"]))

    with pytest.raises(Forbidden, match="has 0 of the 1 approval"):
        requests.apply_request(request=request, actor=Actor.of(people["deployer"]))
    assert Pointer.objects.get(environment=production).stable_version == live[0]


def test_apply_request__by_a_reviewer_without_deploy_permission__forbidden(
    live, production, people
):
    request = ask(live[1], production, Actor.of(people["editor"]))
    requests.approve_request(request=request, actor=Actor.of(people["reviewer"]), comment="ok")

    with pytest.raises(Forbidden, match="deploy_version"):
        requests.apply_request(request=request, actor=Actor.of(people["reviewer2"]))


def test_apply_request__active_version_changed_after_approval__approval_is_stale(
    live, production, people, agent
):
    # Given an approval of "v1 -> v2"
    request = ask(live[1], production, Actor.of(people["editor"]))
    requests.approve_request(
        request=request, actor=Actor.of(people["reviewer"]), comment="v1 -> v2 ok"
    )

    # When production moves to v3 before the request is applied
    factories.deploy(factories.create_version(agent), production)

    # Then the approval no longer counts: the real diff is now v3 -> v2
    with pytest.raises(Forbidden, match="no longer count"):
        requests.apply_request(request=request, actor=Actor.of(people["deployer"]))
    # And a fresh approval against the new state makes it applicable
    requests.approve_request(
        request=request, actor=Actor.of(people["reviewer2"]), comment="v3 -> v2 ok"
    )
    requests.apply_request(request=request, actor=Actor.of(people["deployer"]))
    assert Pointer.objects.get(environment=production).stable_version == live[1]


def test_reject_request__closes_it_and_apply_is_refused(live, production, people):
    request = ask(live[1], production, Actor.of(people["editor"]))

    requests.reject_request(
        request=request, actor=Actor.of(people["reviewer"]), comment="drops billing"
    )

    request.refresh_from_db()
    assert request.status == RequestStatus.REJECTED
    with pytest.raises(Conflict, match="rejected"):
        requests.apply_request(request=request, actor=Actor.of(people["deployer"]))


def test_withdraw_request__by_requester__withdrawn(live, production, people):
    request = ask(live[1], production, Actor.of(people["editor"]))

    requests.withdraw_request(request=request, actor=Actor.of(people["editor"]))

    request.refresh_from_db()
    assert request.status == RequestStatus.WITHDRAWN


def test_withdraw_request__someone_else_without_review_permission__forbidden(
    live, production, people
):
    request = ask(live[1], production, Actor.of(people["editor"]))

    with pytest.raises(Forbidden):
        requests.withdraw_request(request=request, actor=Actor.of(people["deployer"]))


def test_canary_request__applied__canary_runs_at_requested_percent(live, production, people):
    request = ask(live[1], production, Actor.of(people["editor"]), kind="canary", canary_plan="2.5")
    requests.approve_request(request=request, actor=Actor.of(people["reviewer"]), comment="ok")
    deployer = Actor.of(factories.user_with("deployments.manage_canary"))

    rollout = requests.apply_request(request=request, actor=deployer)

    assert isinstance(rollout, CanaryRollout) and rollout.basis_points == 250
    entry = ReleaseLogEntry.objects.get(kind=ReleaseKind.CANARY_START)
    assert entry.request == request


def test_deploy__guarded_environment_without_request__forbidden(live, production, people):
    with pytest.raises(Forbidden, match="requires 1 approval"):
        deploy_version(
            agent=live[1].agent,
            environment=production,
            version=live[1],
            actor=Actor.of(people["deployer"]),
            reason="skip review",
        )


def test_deploy__break_glass_without_permission__forbidden(live, production, people):
    with pytest.raises(Forbidden, match="break_glass"):
        deploy_version(
            agent=live[1].agent,
            environment=production,
            version=live[1],
            actor=Actor.of(people["deployer"]),
            reason="incident",
            break_glass="billing down",
        )


def test_deploy__break_glass_with_permission__deploys_and_records_reason(live, production):
    admin = Actor.of(factories.user_with(DEPLOY, "deployments.break_glass"))

    entry = deploy_version(
        agent=live[1].agent,
        environment=production,
        version=live[1],
        actor=admin,
        reason="incident",
        break_glass="billing down, pager 4711",
    )

    assert entry.details == {"break_glass": "billing down, pager 4711"}


def test_deploy__request_for_other_version__refused(live, production, people, agent):
    request = ask(live[1], production, Actor.of(people["editor"]))
    requests.approve_request(request=request, actor=Actor.of(people["reviewer"]), comment="ok")
    v3 = factories.create_version(agent)

    with pytest.raises(Exception, match="not for this change"):
        deploy_version(
            agent=agent,
            environment=production,
            version=v3,
            actor=Actor.of(people["deployer"]),
            reason="r",
            request=request,
        )


def test_rollback__guarded_environment__never_needs_approval(live, production, agent):
    factories.deploy(live[1], production)
    operator = Actor.of(factories.user_with("deployments.rollback_version"))

    entry = rollback(agent=agent, environment=production, actor=operator, reason="bad")

    assert entry.to_version == live[0]


def test_deploy__staging_requires_no_approval(live, staging, people):
    entry = deploy_version(
        agent=live[1].agent,
        environment=staging,
        version=live[1],
        actor=Actor.of(people["deployer"]),
        reason="try",
    )

    assert entry.details == {}


def test_approve_request__active_version_moved_while_reading__nothing_recorded(
    live, production, people, agent
):
    # Given a reviewer who read the diff against v1
    v1, v2 = live
    request = ask(v2, production, Actor.of(people["editor"]))
    factories.deploy(factories.create_version(agent), production)  # now v3 is active

    # When the approval arrives, naming the version it saw
    with pytest.raises(Conflict, match="changed while you were reading"):
        requests.approve_request(
            request=request,
            actor=Actor.of(people["reviewer"]),
            comment="ok",
            seen_active_id=str(v1.pk),
        )

    # Then nothing is recorded
    assert not request.reviews.exists()
