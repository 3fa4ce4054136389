"""Deployment requests in the admin: asking, the request page, review, apply, withdraw.

People are members of the role groups the migration creates (Editors, Reviewers,
Deployers), so the tests check the permissions a real people gets.
"""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from agentconfig.core.actors import Actor
from deployments.models import (
    CanaryRollout,
    DeploymentRequest,
    ReleaseLogEntry,
    RequestKind,
    RequestReview,
    RequestStatus,
)
from deployments.selectors import get_pointer
from deployments.services import requests
from deployments.services.releases import deploy_version
from tests import factories
from tests.factories import login, member

SCRIPT = '<script>alert("x")</script>'


@pytest.fixture
def open_request(live, production, people) -> DeploymentRequest:
    """The editor's request to deploy v2 to production."""
    return requests.create_request(
        agent=live[1].agent,
        environment=production,
        version=live[1],
        actor=Actor.of(people["editor"]),
        reason="billing paragraph restored",
    )


def _agent_url(name: str, agent, environment: str = "production") -> str:
    return reverse(f"admin:agentconfig_agent_{name}", args=[agent.pk, environment])


def _request_url(request: DeploymentRequest, action: str = "change") -> str:
    return reverse(f"admin:deployments_deploymentrequest_{action}", args=[request.pk])


def _active(agent, environment) -> int | None:
    pointer = get_pointer(agent, environment)
    return pointer.stable_version.version_number if pointer else None


def _approve(request: DeploymentRequest, reviewer) -> RequestReview:
    return requests.approve_request(request=request, actor=Actor.of(reviewer), comment="fine")


def _review_data(request: DeploymentRequest, decision: str = "approve", comment: str = "ok"):
    pointer = get_pointer(request.agent, request.environment)
    return {
        "decision": decision,
        "comment": comment,
        "expected_active": str(pointer.stable_version_id) if pointer else "",
    }


def _apply_data(request: DeploymentRequest) -> dict[str, str]:
    return {"expected_active": _review_data(request)["expected_active"]}


# --- the agent page ----------------------------------------------------------------


def test_agent_page__editor_on_guarded_environment__request_button_and_approval_rule(
    live, people, production
):
    # Given
    agent = live[0].agent

    # When
    content = login(people["editor"]).get(
        reverse("admin:agentconfig_agent_change", args=[agent.pk])
    )

    # Then production offers a request (not a deploy) and says why; no break glass
    page = content.content.decode()
    assert _agent_url("request", agent) in page
    assert _agent_url("deploy", agent) not in page
    assert "requires 1 approval" in page
    assert "Break glass" not in page


def test_agent_page__break_glass_holder__red_break_glass_apart_from_deploy(live, people):
    agent = live[0].agent

    page = (
        login(people["firefighter"])
        .get(reverse("admin:agentconfig_agent_change", args=[agent.pk]))
        .content.decode()
    )

    assert _agent_url("break_glass", agent) in page
    assert 'class="button ac-break-glass"' in page
    assert _agent_url("break_glass", agent, "staging") not in page  # staging needs no approval


def test_agent_page__open_requests__listed_with_approvals_and_link(open_request, people):
    page = (
        login(people["reviewer"])
        .get(reverse("admin:agentconfig_agent_change", args=[open_request.agent.pk]))
        .content.decode()
    )

    assert _request_url(open_request) in page
    assert "0 of 1 approval" in page
    assert "1 open request" in page


def test_deploy_page__guarded_environment__explains_and_leads_to_request(live, people):
    # Given an admin-like user who may deploy and request
    user = member("boss", "Editors", "Deployers")

    response = login(user).get(_agent_url("deploy", live[0].agent))

    assert response.status_code == 200
    content = response.content.decode()
    assert "production requires 1 approval" in content
    assert _agent_url("request", live[0].agent) in content
    assert 'id="deploy_form"' not in content


# --- asking ------------------------------------------------------------------------


def test_request__editor__form_then_diff_then_opened(live, people, production):
    # Given
    v1, v2 = live
    client = login(people["editor"])
    data = {"version": str(v2.pk), "kind": "stable", "reason": "Restore the billing rules."}

    # When the form is shown and posted, the confirmation shows the diff and writes nothing
    assert client.get(_agent_url("request", v1.agent)).status_code == 200
    confirmation = client.post(_agent_url("request", v1.agent), data)
    assert confirmation.status_code == 200
    diff = confirmation.context["version_diff"]
    assert (diff.old, diff.new) == (v1, v2)
    assert not DeploymentRequest.objects.exists()

    # And when it is submitted
    submitted = client.post(confirmation.context["submit_url"], data)

    # Then the request is open and the user lands on its page
    request = DeploymentRequest.objects.get()
    assert submitted.status_code == 302
    assert submitted.url == _request_url(request)
    assert (request.status, request.version, request.kind) == ("open", v2, RequestKind.STABLE)
    assert request.requested_by == people["editor"]
    assert request.reason == "Restore the billing rules."
    assert "Opened request" in client.get(submitted.url).content.decode()


def test_request__canary_with_steps__opened_as_canary(live, people, production):
    v1, v2 = live
    data = {"version": str(v2.pk), "kind": "canary", "canary_plan": "1,5,25", "reason": "try"}

    response = login(people["editor"]).post(_agent_url("request_submit", v1.agent), data)

    request = DeploymentRequest.objects.get()
    assert response.status_code == 302
    assert (request.kind, request.canary_plan) == (RequestKind.CANARY, "1,5,25")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"kind": "stable", "reason": "  "}, "is required: say why"),
        ({"kind": "canary", "canary_plan": "", "reason": "try"}, "give a percentage"),
        ({"kind": "canary", "canary_plan": "5,1", "reason": "try"}, "must increase"),
    ],
)
def test_request_submit__bad_input__message_and_nothing_written(
    live, people, production, data, message
):
    v1, v2 = live

    response = login(people["editor"]).post(
        _agent_url("request_submit", v1.agent), {"version": str(v2.pk), **data}
    )

    assert response.status_code == 200
    assert message in response.content.decode()
    assert not DeploymentRequest.objects.exists()


def test_request_pages__reviewer_without_request_permission__403(live, people):
    v1, v2 = live
    client = login(people["reviewer"])
    data = {"version": str(v2.pk), "kind": "stable", "reason": "x"}

    responses = [
        client.get(_agent_url("request", v1.agent)),
        client.post(_agent_url("request_submit", v1.agent), data),
    ]

    assert [r.status_code for r in responses] == [403, 403]
    assert "deployments.add_deploymentrequest" in responses[1].content.decode()
    assert not DeploymentRequest.objects.exists()


def test_request_submit__get__405(live, people):
    response = login(people["editor"]).get(_agent_url("request_submit", live[0].agent))

    assert response.status_code == 405


# --- the request page ---------------------------------------------------------------


def test_request_page__reviewer__what_is_asked_diff_against_active_and_review_form(
    open_request, people, live
):
    response = login(people["reviewer"]).get(_request_url(open_request))

    assert response.status_code == 200
    content = response.content.decode()
    assert "billing paragraph restored" in content
    assert "asked by <strong>editor</strong>" in content
    assert "requires 1 approval" in content
    diff = response.context["version_diff"]
    assert (diff.old, diff.new) == live
    assert 'id="review_form"' in content
    assert 'id="apply_form"' not in content  # a reviewer may not apply
    assert "Waiting for 1 approval" in content


def test_request_page__diff_follows_the_version_active_now(open_request, people, live, production):
    # Given the editor asked against v1, and v3 was deployed since
    v3 = factories.create_version(open_request.agent)
    factories.deploy(v3, production)

    response = login(people["reviewer"]).get(_request_url(open_request))

    # Then the reviewer sees what applying would change now: v3 -> v2
    diff = response.context["version_diff"]
    assert (diff.old, diff.new) == (v3, live[1])
    assert "was v1 when asked" in response.content.decode()


def test_request_page__requester_who_also_reviews__no_review_form_and_says_why(live, people):
    request = requests.create_request(
        agent=live[0].agent,
        environment=live[0].agent.pointers.get().environment,
        version=live[1],
        actor=Actor.of(people["editor_reviewer"]),
        reason="mine",
    )

    content = login(people["editor_reviewer"]).get(_request_url(request)).content.decode()

    assert 'id="review_form"' not in content
    assert "You asked for this deployment, so another reviewer must approve it." in content
    assert 'id="withdraw_form"' in content


def test_request_page__staff_without_view_permission__403(open_request, staff_client):
    response = staff_client.get(_request_url(open_request))

    assert response.status_code == 403


def test_request_page__unknown_id__404(db, people):
    response = login(people["reviewer"]).get(
        reverse("admin:deployments_deploymentrequest_change", args=[999])
    )

    assert response.status_code == 404


# --- review ----------------------------------------------------------------------------


def test_review__reviewer_approves__recorded_with_comment_and_counts(open_request, people):
    client = login(people["reviewer"])

    response = client.post(
        _request_url(open_request, "review"),
        _review_data(open_request, comment="Read the diff: the paragraph is back."),
    )

    assert response.status_code == 302
    review = RequestReview.objects.get()
    assert (review.reviewer, review.decision) == (people["reviewer"], "approve")
    assert review.comment == "Read the diff: the paragraph is back."
    page = client.get(response.url).content.decode()
    assert "You approved request" in page
    assert "<strong>1 of 1</strong>" in page
    assert "counts</span>" in page


def test_review__reviewer_rejects__request_closed(open_request, people):
    response = login(people["reviewer"]).post(
        _request_url(open_request, "review"),
        _review_data(open_request, decision="reject", comment="tone is wrong"),
    )

    open_request.refresh_from_db()
    assert response.status_code == 302
    assert open_request.status == RequestStatus.REJECTED


def test_review__editor_without_review_permission__403_and_nothing_recorded(open_request, people):
    other_editor = people["editor2"]

    response = login(other_editor).post(
        _request_url(open_request, "review"), _review_data(open_request)
    )

    assert response.status_code == 403
    assert "deployments.review_deploymentrequest" in response.content.decode()
    assert not RequestReview.objects.exists()


def test_review__requester_who_is_a_reviewer__refusal_shown_and_nothing_recorded(live, people):
    # Given a request by someone who also holds the review permission
    request = requests.create_request(
        agent=live[0].agent,
        environment=live[0].agent.pointers.get().environment,
        version=live[1],
        actor=Actor.of(people["editor_reviewer"]),
        reason="mine",
    )

    # When they try to approve it anyway (the form is hidden; the POST is hand-made)
    response = login(people["editor_reviewer"]).post(
        _request_url(request, "review"), _review_data(request)
    )

    # Then the service's refusal is on the request page, and nothing is recorded
    assert response.status_code == 403
    content = response.content.decode()
    assert "Not recorded: you cannot review your own request" in content
    assert 'class="errornote ac-refusal"' in content
    assert not RequestReview.objects.exists()


def test_review__missing_comment__message_and_nothing_recorded(open_request, people):
    response = login(people["reviewer"]).post(
        _request_url(open_request, "review"), _review_data(open_request, comment="   ")
    )

    assert response.status_code == 200
    assert "is required: say what you checked" in response.content.decode()
    assert not RequestReview.objects.exists()


def test_review__active_version_moved_since_page__nothing_recorded_and_new_diff(
    open_request, people, live, production
):
    # Given the reviewer read "v1 -> v2", then someone deployed v3
    data = _review_data(open_request)
    v3 = factories.create_version(open_request.agent)
    factories.deploy(v3, production)

    # When the approval is posted
    response = login(people["reviewer"]).post(_request_url(open_request, "review"), data)

    # Then nothing is recorded and the page shows the real diff (v3 -> v2)
    assert response.status_code == 200
    assert "changed while you were reading" in response.content.decode()
    assert response.context["version_diff"].old == v3
    assert not RequestReview.objects.exists()


def test_review__twice__conflict_shown(open_request, people):
    _approve(open_request, people["reviewer"])

    response = login(people["reviewer"]).post(
        _request_url(open_request, "review"), _review_data(open_request)
    )

    assert response.status_code == 409
    assert "you already reviewed request" in response.content.decode()
    assert RequestReview.objects.count() == 1


def test_request_page__script_in_reason_and_comment__escaped(live, people, production):
    # Given a request and a review whose texts hold markup
    request = requests.create_request(
        agent=live[0].agent,
        environment=production,
        version=live[1],
        actor=Actor.of(people["editor"]),
        reason=f"reason {SCRIPT}",
    )
    requests.approve_request(
        request=request, actor=Actor.of(people["reviewer"]), comment=f"comment {SCRIPT}"
    )

    pages = [
        login(people["reviewer2"]).get(_request_url(request)),
        login(people["reviewer2"]).get(reverse("admin:deployments_deploymentrequest_changelist")),
        login(people["reviewer2"]).get(
            reverse("admin:agentconfig_agent_timeline", args=[live[0].agent.pk])
        ),
    ]

    for response in pages:
        content = response.content.decode()
        assert response.status_code == 200
        assert SCRIPT not in content
    assert "reason &lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in pages[0].content.decode()
    assert "comment &lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in pages[0].content.decode()


# --- apply -------------------------------------------------------------------------------


def test_apply__deployer_after_approval__deploys_and_closes_request(
    open_request, people, production
):
    # Given an approved request
    _approve(open_request, people["reviewer"])
    client = login(people["deployer"])
    page = client.get(_request_url(open_request)).content.decode()
    assert 'id="apply_form"' in page and "Ready to apply" in page

    # When the deployer applies it
    response = client.post(_request_url(open_request, "apply"), _apply_data(open_request))

    # Then v2 is live, the release names the request, the request is closed
    assert response.status_code == 302
    assert _active(open_request.agent, production) == 2
    entry = ReleaseLogEntry.objects.filter(environment=production).first()
    assert entry.request == open_request
    assert entry.actor == people["deployer"]
    open_request.refresh_from_db()
    assert open_request.status == RequestStatus.APPLIED
    assert "Applied request" in client.get(response.url).content.decode()


def test_apply__reviewer_without_deploy_permission__403_and_nothing_moves(
    open_request, people, production
):
    _approve(open_request, people["reviewer"])

    response = login(people["reviewer2"]).post(
        _request_url(open_request, "apply"), _apply_data(open_request)
    )

    assert response.status_code == 403
    assert "deployments.deploy_version" in response.content.decode()
    assert _active(open_request.agent, production) == 1


def test_apply__without_approval__refusal_shown_and_nothing_moves(open_request, people, production):
    response = login(people["deployer"]).post(
        _request_url(open_request, "apply"), _apply_data(open_request)
    )

    assert response.status_code == 403
    assert "Not applied: request" in response.content.decode()
    assert "has 0 of the 1 approval(s)" in response.content.decode()
    assert _active(open_request.agent, production) == 1


def test_request_page__approval_stale__shown_as_not_counting_and_apply_refused(
    open_request, people, production
):
    # Given an approval given against v1, then v3 deployed by break glass
    _approve(open_request, people["reviewer"])
    v3 = factories.create_version(open_request.agent)
    factories.deploy(v3, production)
    client = login(people["deployer"])

    # When the deployer opens the request
    page = client.get(_request_url(open_request)).content.decode()

    # Then the approval is shown as no longer counting, and there is no apply button
    assert "no longer counts" in page
    assert "Given while v1 was active in production; v3 is active now" in page
    assert "<strong>0 of 1</strong>" in page
    assert 'id="apply_form"' not in page

    # And a hand-made apply is refused by the service, with its reason
    response = client.post(_request_url(open_request, "apply"), _apply_data(open_request))
    assert response.status_code == 403
    assert "no longer count" in response.content.decode()
    assert _active(open_request.agent, production) == 3


def test_apply__canary_request__canary_starts_at_first_step(live, people, production):
    # Given an approved canary request
    request = requests.create_request(
        agent=live[0].agent,
        environment=production,
        version=live[1],
        actor=Actor.of(people["editor"]),
        reason="try it",
        kind=RequestKind.CANARY,
        canary_plan="5,50",
    )
    _approve(request, people["reviewer"])

    # When
    response = login(people["deployer"]).post(_request_url(request, "apply"), _apply_data(request))

    # Then
    assert response.status_code == 302
    assert response.url.endswith("#canary-production")
    rollout = CanaryRollout.objects.get()
    assert (rollout.canary_version, rollout.percent) == (live[1], 5)


def test_apply__active_version_moved_since_page__nothing_applied(open_request, people, production):
    _approve(open_request, people["reviewer"])
    data = _apply_data(open_request)
    deploy_version(
        agent=open_request.agent,
        environment=production,
        version=factories.create_version(open_request.agent),
        actor=factories.ACTOR,
        reason="meanwhile",
        break_glass="incident",
    )

    response = login(people["deployer"]).post(_request_url(open_request, "apply"), data)

    assert response.status_code == 200
    assert "changed while you were reading" in response.content.decode()
    assert open_request.version.version_number != _active(open_request.agent, production)


@pytest.mark.parametrize("action", ["review", "apply", "withdraw", "override_gate"])
def test_request_actions__get__405_and_nothing_written(open_request, action, people):
    user = people["all_in_one"]

    response = login(user).get(_request_url(open_request, action))

    assert response.status_code == 405
    open_request.refresh_from_db()
    assert open_request.status == RequestStatus.OPEN
    assert not RequestReview.objects.exists()


def test_apply__without_csrf_token__refused(open_request, people, production):
    _approve(open_request, people["reviewer"])
    client = Client(enforce_csrf_checks=True)
    client.force_login(people["deployer"])

    response = client.post(_request_url(open_request, "apply"), _apply_data(open_request))

    assert response.status_code == 403
    assert _active(open_request.agent, production) == 1


# --- withdraw ------------------------------------------------------------------------------


def test_withdraw__requester__request_withdrawn(open_request, people):
    response = login(people["editor"]).post(_request_url(open_request, "withdraw"))

    open_request.refresh_from_db()
    assert response.status_code == 302
    assert open_request.status == RequestStatus.WITHDRAWN


def test_withdraw__someone_else_without_review_permission__403(open_request, people):
    response = login(people["editor2"]).post(_request_url(open_request, "withdraw"))

    open_request.refresh_from_db()
    assert response.status_code == 403
    assert open_request.status == RequestStatus.OPEN


# --- the requests list ---------------------------------------------------------------------


def test_requests_list__open_first_then_newest_with_approvals(live, people, production, staging):
    # Given an applied request (older) and an open one
    editor = Actor.of(people["editor"])
    v3 = factories.create_version(live[0].agent)
    applied = requests.create_request(
        agent=v3.agent, environment=staging, version=v3, actor=editor, reason="staging first"
    )
    requests.apply_request(request=applied, actor=factories.ACTOR)
    opened = requests.create_request(
        agent=v3.agent, environment=production, version=live[1], actor=editor, reason="prod"
    )

    response = login(people["reviewer"]).get(
        reverse("admin:deployments_deploymentrequest_changelist")
    )

    assert response.status_code == 200
    assert [r.pk for r in response.context["cl"].result_list] == [opened.pk, applied.pk]
    content = response.content.decode()
    assert "0 of 1" in content
    assert "Deployment requests" in content


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("status__exact=open", ["prod v2"]),
        ("status__exact=withdrawn", ["staging v3"]),
        ("environment__id__exact={staging}", ["staging v3"]),
    ],
)
def test_requests_list__filters__only_matching_requests(
    live, people, production, staging, query, expected
):
    editor = Actor.of(people["editor"])
    v3 = factories.create_version(live[0].agent)
    withdrawn = requests.create_request(
        agent=v3.agent, environment=staging, version=v3, actor=editor, reason="staging v3"
    )
    requests.withdraw_request(request=withdrawn, actor=editor)
    requests.create_request(
        agent=v3.agent, environment=production, version=live[1], actor=editor, reason="prod v2"
    )

    url = reverse("admin:deployments_deploymentrequest_changelist")
    response = login(people["reviewer"]).get(f"{url}?{query.format(staging=staging.pk)}")

    assert [r.reason for r in response.context["cl"].result_list] == expected


def test_requests_list__many_requests__queries_do_not_grow(
    people, production, staging, django_assert_max_num_queries
):
    # Given eight agents, each with an open and an approved request and reviews
    editor, reviewer = Actor.of(people["editor"]), Actor.of(people["reviewer"])
    for _ in range(8):
        agent = factories.create_agent()
        v1, v2 = factories.create_version(agent), factories.create_version(agent)
        factories.deploy(v1, production)
        request = requests.create_request(
            agent=agent, environment=production, version=v2, actor=editor, reason="r"
        )
        requests.approve_request(request=request, actor=reviewer, comment="ok")
        requests.create_request(
            agent=agent, environment=staging, version=v2, actor=editor, reason="s"
        )
    client = login(people["reviewer"])
    url = reverse("admin:deployments_deploymentrequest_changelist")

    # When / Then: session, user, permissions, counts, filters, the page and its reviews
    with django_assert_max_num_queries(14):
        response = client.get(url)
    assert response.status_code == 200
    assert response.content.decode().count("1 of 1") == 8
