"""ApprovalState: the one answer to who may review, withdraw and apply a request.

The services refuse what it refuses and the request page offers exactly what it allows;
these tests hold both to the same answer for the same person.
"""

from __future__ import annotations

import pytest
from django.urls import reverse

from agentconfig.core.actors import Actor
from agentconfig.core.errors import Forbidden
from deployments.models import DeploymentRequest, RequestStatus
from deployments.services import requests
from deployments.services.requests import ApprovalState
from tests import factories
from tests.factories import login, member

# `live` (tests/conftest.py): v1 active in production, v2 made since.


@pytest.fixture
def editor(db):
    return member("asker", "Editors")


@pytest.fixture
def open_request(live, production, editor) -> DeploymentRequest:
    return requests.create_request(
        agent=live[1].agent,
        environment=production,
        version=live[1],
        actor=Actor.of(editor),
        reason="billing paragraph restored",
    )


def _page(request: DeploymentRequest, user) -> str:
    url = reverse("admin:deployments_deploymentrequest_change", args=[request.pk])
    response = login(user).get(url)
    assert response.status_code == 200
    return response.content.decode()


def _state(request: DeploymentRequest, user) -> ApprovalState:
    pointer = request.environment.pointers.get(agent=request.agent)
    return ApprovalState(request, Actor.of(user), pointer.stable_version_id)


# --- withdraw: one rule in service and page -----------------------------------------------


def test_withdraw__reviewer_not_requester__no_button_and_service_refuses(open_request):
    reviewer = member("rita", "Reviewers")

    assert not _state(open_request, reviewer).may_withdraw
    assert 'id="withdraw_form"' not in _page(open_request, reviewer)
    with pytest.raises(Forbidden, match="only its requester"):
        requests.withdraw_request(request=open_request, actor=Actor.of(reviewer))
    open_request.refresh_from_db()
    assert open_request.status == RequestStatus.OPEN


def test_withdraw__reviewer_posts_the_form__403_and_still_open(open_request):
    reviewer = member("rita", "Reviewers")
    url = reverse("admin:deployments_deploymentrequest_withdraw", args=[open_request.pk])

    response = login(reviewer).post(url)

    open_request.refresh_from_db()
    assert response.status_code == 403
    assert open_request.status == RequestStatus.OPEN


@pytest.mark.parametrize("who", ["requester", "administrator"])
def test_withdraw__requester_or_administrator__button_and_service_withdraws(open_request, who):
    user = open_request.requested_by if who == "requester" else member("ana", "Admins")

    assert _state(open_request, user).may_withdraw
    assert 'id="withdraw_form"' in _page(open_request, user)
    requests.withdraw_request(request=open_request, actor=Actor.of(user))
    open_request.refresh_from_db()
    assert open_request.status == RequestStatus.WITHDRAWN


def test_withdraw__system_actor__allowed(open_request):
    assert ApprovalState(open_request, Actor.cli("tests")).may_withdraw


# --- the page offers exactly what the state allows ----------------------------------------


@pytest.mark.parametrize(
    "groups",
    [("Editors",), ("Reviewers",), ("Deployers",), ("Admins",), ("Editors", "Reviewers")],
)
def test_page__actions_offered__are_the_states_answers(open_request, groups):
    user = member("someone", *groups)
    state = _state(open_request, user)

    content = _page(open_request, user)

    assert ('id="review_form"' in content) == state.may_review
    assert ('id="withdraw_form"' in content) == state.may_withdraw
    assert ('id="apply_pending"' in content) == state.may_apply  # not approved yet


def test_may_review__requester_never__even_holding_the_permission(live, production):
    both = member("both", "Editors", "Reviewers")
    request = requests.create_request(
        agent=live[1].agent,
        environment=production,
        version=live[1],
        actor=Actor.of(both),
        reason="r",
    )
    state = _state(request, both)

    assert state.holds_review_permission and state.is_requester
    assert not state.may_review
    assert "another reviewer must approve it" in _page(request, both)


def test_may_review__once__then_has_reviewed(open_request):
    reviewer = member("rita", "Reviewers")
    assert _state(open_request, reviewer).may_review

    requests.approve_request(request=open_request, actor=Actor.of(reviewer), comment="fine")

    state = _state(open_request, reviewer)
    assert state.has_reviewed and not state.may_review


def test_closed_request__nobody_may_do_anything(open_request):
    requests.withdraw_request(request=open_request, actor=Actor.of(open_request.requested_by))
    open_request.refresh_from_db()
    admin = member("ana", "Admins")

    state = _state(open_request, admin)

    assert not (state.may_review or state.may_withdraw or state.may_apply)


# --- the counts -----------------------------------------------------------------------------


def test_counts__approval_then_the_active_version_moves__stale(open_request, live, production):
    reviewer = member("rita", "Reviewers")
    before = _state(open_request, reviewer)
    assert (before.needed, before.valid, before.stale, before.missing) == (1, 0, 0, 1)
    assert not before.enough

    requests.approve_request(request=open_request, actor=Actor.of(reviewer), comment="fine")
    approved = _state(open_request, reviewer)
    assert (approved.valid, approved.stale, approved.missing, approved.enough) == (1, 0, 0, True)

    v3 = factories.create_version(live[0].agent)
    factories.deploy(v3, production)
    moved = _state(open_request, reviewer)
    assert (moved.valid, moved.stale, moved.missing, moved.enough) == (0, 1, 1, False)


def test_counts__rejection__not_enough(open_request):
    reviewer = member("rita", "Reviewers")
    requests.reject_request(request=open_request, actor=Actor.of(reviewer), comment="no")

    state = _state(open_request, reviewer)

    assert state.rejected and not state.enough
