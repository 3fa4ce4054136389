"""Admin pages of canary policies, rollouts and decisions, and canary rows in the release log."""

from __future__ import annotations

import pytest
from django.urls import reverse

from deployments.models import CanaryDecision, CanaryPolicy, CanaryRollout, ReleaseKind
from deployments.services import canaries
from tests import factories

pytestmark = pytest.mark.usefixtures("direct_releases")

VALID_POLICY = factories.CANARY_POLICY_FORM


def _evaluated_rollout(agent) -> CanaryRollout:
    rollout = CanaryRollout.objects.get(agent=agent)
    canaries.evaluate_canary(rollout)
    return rollout


# --- canary policy -------------------------------------------------------------------


def test_policy_admin__valid_policy__saved_normalised_with_history(admin_client, production):
    response = admin_client.post(
        reverse("admin:deployments_canarypolicy_add"),
        {**VALID_POLICY, "environment": str(production.pk), "default_steps": " 2, 10 ,50.5 "},
    )

    assert response.status_code == 302
    policy = CanaryPolicy.objects.get(environment=production)
    assert policy.default_steps == "2,10,50.5"
    assert policy.history.get().history_user.username == "admin"


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("default_steps", "5,1", "must increase step by step; got 5,1."),
        ("default_steps", "0,5", "must be more than 0 and less than 100"),
        ("default_steps", "", "This field is required."),
        ("rollback_ratio", "0.9", "must be at least 1 (a multiple of stable&#x27;s); got 0.9."),
        ("margin", "0.9", "must be at least 1 (a multiple of stable&#x27;s); got 0.9."),
        ("rollback_confidence", "1", "must be more than 0.5 and less than 1"),
        ("promote_confidence", "0.5", "must be more than 0.5 and less than 1"),
        ("power", "1.5", "must be more than 0.5 and less than 1"),
        ("max_duration_minutes", "0", "must be at least 1"),
        ("min_regression", "0", "must be more than 0"),
        ("min_regression", "0.2", "must be more than the rollback ratio minus 1 (0.25)"),
        ("max_error_increase", "0.9", "must be between 0 and 0.5"),
        ("srm_tolerance", "1", "must be between 0 and 0.99"),
        ("latency_quantile", "0.2", "must be between 0.5 and 0.999"),
        ("max_score_drop", "-0.1", "must be 0 or more"),
        ("max_latency_ratio", "0.8", "must be at least 1"),
        ("deadline_action", "wait", "Select a valid choice"),
    ],
)
def test_policy_admin__invalid_value__clear_message_and_nothing_saved(
    admin_client, production, field, value, message
):
    response = admin_client.post(
        reverse("admin:deployments_canarypolicy_add"),
        {**VALID_POLICY, "environment": str(production.pk), field: value},
    )

    assert response.status_code == 200
    assert field in response.context["adminform"].form.errors
    assert message in response.content.decode()
    assert not CanaryPolicy.objects.exists()


def test_policy_admin__existing__environment_read_only_and_edit_saved(admin_client, production):
    policy = CanaryPolicy.objects.create(environment=production)
    url = reverse("admin:deployments_canarypolicy_change", args=[policy.pk])

    page = admin_client.get(url)
    response = admin_client.post(url, {**VALID_POLICY, "max_duration_minutes": "720"})

    assert 'name="environment"' not in page.content.decode()
    assert response.status_code == 302
    policy.refresh_from_db()
    assert (policy.environment, policy.max_duration_minutes) == (production, 720)


def test_policy_admin__second_policy_for_an_environment__refused(admin_client, production):
    CanaryPolicy.objects.create(environment=production)

    response = admin_client.post(
        reverse("admin:deployments_canarypolicy_add"),
        {**VALID_POLICY, "environment": str(production.pk)},
    )

    assert response.status_code == 200
    assert "already exists" in response.content.decode()
    assert CanaryPolicy.objects.count() == 1


# --- rollouts and decisions -----------------------------------------------------------


def test_rollout_admin__list_and_detail_with_decisions__read_only(admin_client, canary_agent):
    rollout = _evaluated_rollout(canary_agent)
    change_url = reverse("admin:deployments_canaryrollout_change", args=[rollout.pk])

    changelist = admin_client.get(reverse("admin:deployments_canaryrollout_changelist"))
    change = admin_client.get(change_url)
    post = admin_client.post(change_url, {})
    add = admin_client.get(reverse("admin:deployments_canaryrollout_add"))
    delete = admin_client.get(reverse("admin:deployments_canaryrollout_delete", args=[rollout.pk]))

    assert (changelist.status_code, change.status_code) == (200, 200)
    assert (post.status_code, add.status_code, delete.status_code) == (403, 403, 403)
    listing = changelist.content.decode()
    assert "1 % (step 1 of 4)" in listing
    assert "Running" in listing
    detail = change.content.decode()
    assert "1 % ≥ 30 min → 5 % ≥ 30 min → 25 % ≥ 30 min → 50 % ≥ 30 min → promote" in detail
    assert "Holding at step 1 of 4" in detail  # the decision, inline
    assert 'name="_save"' not in detail
    assert "decisions-0-verdict" not in detail  # no editable inline fields


def test_rollout_admin__many_decisions__inline_shows_newest_and_links_the_rest(
    admin_client, canary_agent
):
    rollout = CanaryRollout.objects.get(agent=canary_agent)
    for _ in range(52):
        canaries.evaluate_canary(rollout)

    response = admin_client.get(
        reverse("admin:deployments_canaryrollout_change", args=[rollout.pk])
    )

    content = response.content.decode()
    assert "Showing the newest 50 of 52 decisions." in content
    assert f"?rollout={rollout.pk}" in content
    decisions = admin_client.get(
        reverse("admin:deployments_canarydecision_changelist"), {"rollout": str(rollout.pk)}
    )
    assert decisions.status_code == 200
    assert "52 canary decisions" in decisions.content.decode()


def test_decision_admin__list_and_detail__read_only_with_inputs(admin_client, canary_agent):
    rollout = _evaluated_rollout(canary_agent)
    decision = CanaryDecision.objects.get(rollout=rollout)

    changelist = admin_client.get(reverse("admin:deployments_canarydecision_changelist"))
    change = admin_client.get(
        reverse("admin:deployments_canarydecision_change", args=[decision.pk])
    )
    add = admin_client.get(reverse("admin:deployments_canarydecision_add"))

    assert (changelist.status_code, change.status_code, add.status_code) == (200, 200, 403)
    assert "Holding at step 1 of 4" in changelist.content.decode()
    detail = change.content.decode()
    assert "&quot;rollback_ratio&quot;: 1.25" in detail  # the inputs, as JSON
    assert 'name="_save"' not in detail


def test_canary_admins__staff_without_view_permission__403(staff_client, canary_agent):
    rollout = _evaluated_rollout(canary_agent)

    responses = [
        staff_client.get(reverse("admin:deployments_canaryrollout_changelist")),
        staff_client.get(reverse("admin:deployments_canaryrollout_change", args=[rollout.pk])),
        staff_client.get(reverse("admin:deployments_canarydecision_changelist")),
        staff_client.get(reverse("admin:deployments_canarypolicy_add")),
    ]

    assert [r.status_code for r in responses] == [403, 403, 403, 403]


# --- release log ---------------------------------------------------------------------


def test_release_log_admin__canary_kinds__details_in_words_and_as_stored(
    admin_client, canary_agent, production
):
    # Given a canary that started, advanced and was promoted
    common = {"agent": canary_agent, "environment": production, "actor": factories.ACTOR}
    canaries.advance_canary(**common, reason="step up")
    canaries.promote_canary(**common, reason="ship it")
    rollout = CanaryRollout.objects.get()
    start = canary_agent.release_log.get(kind=ReleaseKind.CANARY_START)

    # When
    changelist = admin_client.get(reverse("admin:deployments_releaselogentry_changelist"))
    change = admin_client.get(reverse("admin:deployments_releaselogentry_change", args=[start.pk]))

    # Then
    listing = changelist.content.decode()
    assert "Canary started" in listing
    assert "Canary percentage changed" in listing
    assert "Canary promoted" in listing
    assert "1 % → 5 % → 25 % → 50 %, ≥ 30 min each" in listing
    assert "1 % → 5 % · " in listing
    assert "at 5 % · " in listing
    assert reverse("admin:deployments_canaryrollout_change", args=[rollout.pk]) in listing
    detail = change.content.decode()
    assert "&quot;bake_seconds&quot;: 1800" in detail
