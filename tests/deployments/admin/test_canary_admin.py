"""The canary panel on the agent page and the canary pages under it."""

from __future__ import annotations

import re

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from deployments.models import (
    CanaryDecision,
    CanaryPolicy,
    CanaryRollout,
    CanaryStatus,
    ReleaseKind,
    ReleaseLogEntry,
)
from deployments.selectors import get_pointer
from deployments.services import canaries as canary_services
from tests import factories
from tests.deployments import canary_helpers

pytestmark = pytest.mark.usefixtures("direct_releases")

ACTIONS = ("advance", "promote", "abort", "percent")


def _agent_url(agent) -> str:
    return reverse("admin:agentconfig_agent_change", args=[agent.pk])


def _url(name: str, agent, environment: str = "production") -> str:
    return reverse(f"admin:agentconfig_agent_canary_{name}", args=[agent.pk, environment])


def _version(agent, number: int):
    return agent.versions.get(version_number=number)


def _rollout(agent) -> CanaryRollout:
    return CanaryRollout.objects.get(agent=agent, status=CanaryStatus.RUNNING)


def _state(rollout: CanaryRollout) -> str:
    return f"{rollout.pk}:{rollout.step_index}:{rollout.basis_points}"


def _log_count() -> int:
    return ReleaseLogEntry.objects.count()


# --- the panel -----------------------------------------------------------------------


def test_agent_page__canary_without_outcomes__panel_says_there_is_no_data(
    admin_client, canary_agent
):
    response = admin_client.get(_agent_url(canary_agent))

    assert response.status_code == 200
    content = response.content.decode()
    assert 'id="canary-production"' in content
    assert "Canary in Production: v2 at 1 %" in content
    assert "1 of 4: 1 % of users" in content
    assert "No outcomes reported since the canary started" in content
    assert "No outcomes reported yet." in content  # inside the chart
    assert "No decisions yet" in content
    for action in ACTIONS:
        assert _url(action, canary_agent) in content
    # The canary runs: no second one can be started from the environments table.
    assert _url("start", canary_agent) not in content


def test_agent_page__canary_with_outcomes__counts_rates_decisions_and_chart(
    admin_client, canary_agent, production, report
):
    # Given outcomes on both arms and one evaluation by the analysis
    report(canary_agent, production, _version(canary_agent, 1), ok=294, failed=6)
    report(canary_agent, production, _version(canary_agent, 2), ok=48, failed=2)
    canary_services.evaluate_canary(_rollout(canary_agent))

    # When
    response = admin_client.get(_agent_url(canary_agent))

    # Then
    content = response.content.decode()
    panel = response.context["canaries"][0].canary
    stable, canary_arm = panel.arms
    assert (stable.step.n, stable.step.errors, stable.step_rate) == (300, 6, "2 %")
    assert (canary_arm.step.n, canary_arm.step.errors, canary_arm.step_rate) == (50, 2, "4 %")
    assert (canary_arm.total.n, canary_arm.total.errors) == (50, 2)
    assert "No outcomes reported since" not in content
    assert "<svg" in content
    assert 'aria-labelledby="canary-chart-production-title canary-chart-production-desc"' in (
        content
    )
    assert "canary: 4 % (2 of 50 outcomes failed)" in content
    assert "<circle" in content
    assert [row.decision.verdict for row in panel.decisions] == ["hold"]
    # The analysis as it stands: the bound that decides, how far, SRM and the deadline
    assert panel.analysis.verdict == "hold"
    assert "Analysis of this step" in content
    assert "advancing to 5 % needs it shown within 6x" in content
    assert "Sample ratio: not checked until each arm expects 30 outcomes" in content
    assert re.search(
        r"Deadline: in \d+ h( \d+ min)?, an undecided canary is rolled back\.", content
    )
    assert "Sample-ratio mismatch: the ramp holds." not in content


def test_agent_page__canary_missing_reports__sample_ratio_warning(
    admin_client, canary_agent, production, report
):
    # Given a 1 % canary with 9 % of the outcomes: reports doubled, or routing broken
    report(canary_agent, production, _version(canary_agent, 1), ok=3000)
    report(canary_agent, production, _version(canary_agent, 2), ok=300)

    content = admin_client.get(_agent_url(canary_agent)).content.decode()

    assert "Sample-ratio mismatch: the ramp holds." in content
    assert "Sample ratio: MISMATCH, the canary has 9.1 % of the outcomes for 1.0 % of the" in (
        content
    )


def test_agent_page__canary_advanced__step_totals_as_the_analysis_sees_and_change_marked(
    admin_client, canary_agent, production, report
):
    # Given outcomes in step 1, then an advance to 5 %, then outcomes in step 2
    v2 = _version(canary_agent, 2)
    report(canary_agent, production, v2, ok=9, failed=1)
    rollout = canary_services.advance_canary(
        agent=canary_agent, environment=production, actor=factories.ACTOR, reason="next"
    )
    report(canary_agent, production, v2, ok=4)

    response = admin_client.get(_agent_url(canary_agent))

    # Then "this step" is exactly what the analysis judges (counts are per minute, so the
    # minute the step began in belongs to it), and "since started" is everything
    panel = response.context["canaries"][0].canary
    canary_arm = panel.arms[1]
    seen = canary_services.analyse(rollout, now=timezone.now()).inputs["canary"]
    assert (canary_arm.step.n, canary_arm.step.errors) == (seen["n"], seen["errors"])
    assert (canary_arm.total.n, canary_arm.total.errors) == (14, 1)
    assert "2 of 4: 5 % of users" in response.content.decode()
    assert ">→ 5 %</text>" in panel.chart


def test_agent_page__no_canary__start_button_per_deployed_environment(admin_client, released_agent):
    response = admin_client.get(_agent_url(released_agent))

    content = response.content.decode()
    assert _url("start", released_agent, "production") in content
    assert _url("start", released_agent, "staging") in content
    assert "ac-canary" not in content
    assert response.context["canaries"] == []


def test_agent_page__user_without_manage_canary__panel_shown_without_buttons(
    viewer_client, canary_agent
):
    response = viewer_client.get(_agent_url(canary_agent))

    assert response.status_code == 200
    content = response.content.decode()
    assert 'id="canary-production"' in content
    for action in ("start", *ACTIONS):
        assert _url(action, canary_agent) not in content
    assert "Advance…" not in content


def test_agent_page__finished_canaries__listed_with_status_and_reason(
    admin_client, canary_agent, production
):
    # Given the canary was aborted with a reason that contains markup
    canary_services.abort_canary(
        agent=canary_agent,
        environment=production,
        actor=factories.ACTOR,
        reason="<script>alert('reason')</script> broke billing",
    )

    response = admin_client.get(_agent_url(canary_agent))

    content = response.content.decode()
    assert 'id="finished-canaries"' in content
    assert "Aborted" in content
    assert "&lt;script&gt;alert(&#x27;reason&#x27;)&lt;/script&gt; broke billing" in content
    assert "<script>alert('reason')" not in content
    assert response.context["canaries"] == []


def test_agent_page__markup_in_names_and_explanations__escaped_in_panel_and_chart(
    admin_client, production, report
):
    # Given an agent, an environment and a decision whose texts contain markup
    agent = factories.create_agent(slug="escaping-bot", name="<script>alert('name')</script>")
    production.name = "<script>alert('env')</script>"
    production.save()
    v1, v2 = factories.create_version(agent), factories.create_version(agent)
    factories.deploy(v1, production)
    rollout = canary_helpers.start(v2, production, actor=factories.ACTOR, reason="x", steps="5")
    report(agent, production, v1, ok=10)
    # A decision row as evaluate_canary writes it, with a hostile explanation.
    CanaryDecision.objects.create(
        rollout=rollout,
        verdict="hold",
        explanation="<script>alert('explanation')</script>",
        inputs={},
        step_index=0,
        basis_points=500,
    )

    # When
    content = admin_client.get(_agent_url(agent)).content.decode()

    # Then nothing of it is markup
    assert "<script>alert(" not in content
    assert "&lt;script&gt;alert(&#x27;explanation&#x27;)&lt;/script&gt;" in content
    assert "&lt;script&gt;alert(&#x27;name&#x27;)&lt;/script&gt;" in content
    # The chart's title names the environment, escaped by canary_chart.
    assert "in &lt;script&gt;alert(&#x27;env&#x27;)&lt;/script&gt;: canary v2" in content


def test_agent_page__canaries_everywhere_with_many_decisions__query_count_bounded(
    admin_client, agent, django_assert_max_num_queries, report
):
    # Given one environment with a canary and one decision: the baseline
    environments = [factories.environment(slug) for slug in ("dev", "staging", "production")]
    environments[0].required_approvals = 0  # like staging and production (direct_releases)
    environments[0].save()
    versions = [factories.create_version(agent) for _ in range(2)]
    for environment in environments:
        factories.deploy(versions[0], environment)

    def start(environment) -> CanaryRollout:
        return canary_helpers.start(versions[1], environment, actor=factories.ACTOR, reason="x")

    canary_services.evaluate_canary(start(environments[0]))
    report(agent, environments[0], versions[0], ok=20, failed=1)
    with django_assert_max_num_queries(100) as baseline:
        admin_client.get(_agent_url(agent))
    budget = len(baseline.captured_queries)

    # And then canaries in three environments, each with outcomes and 15 decisions
    for environment in environments[1:]:
        start(environment)
    for environment in environments:
        report(agent, environment, versions[1], ok=5, failed=1)
        rollout = get_pointer(agent, environment).canary
        for _ in range(15):
            canary_services.evaluate_canary(rollout)

    # When / Then: not one query more
    with django_assert_max_num_queries(budget):
        response = admin_client.get(_agent_url(agent))
    assert len(response.context["canaries"]) == 3
    assert all(len(row.canary.decisions) == 10 for row in response.context["canaries"])


# --- start a canary ------------------------------------------------------------------


def test_canary_start__form_then_confirmation_then_apply__running_rollout_logged_as_user(
    admin_client, released_agent, production
):
    # Given production runs v2; v3 differs in its model
    v3 = _version(released_agent, 3)
    data = {
        "version": str(v3.pk),
        "mode": "steps",
        "steps": "1, 10,50",
        "bake_minutes": "15",
        "reason": "Try the new model.",
    }

    # When the form is posted, the confirmation shows the plan and writes nothing
    confirmation = admin_client.post(_url("start", released_agent), data)
    assert confirmation.status_code == 200
    content = confirmation.content.decode()
    assert "From stable" in content
    assert "v2 → v3" in content  # the configuration comparison
    assert [step.percent for step in confirmation.context["plan"]] == [1, 10, 50]
    assert "10 % of users, for at least 15 min" in content
    assert "then v3 is promoted" in content
    assert not CanaryRollout.objects.exists()
    apply_url = confirmation.context["apply_url"]
    assert apply_url == _url("start_apply", released_agent)

    # And when the confirmation is posted
    stable = get_pointer(released_agent, production).stable_version
    applied = admin_client.post(apply_url, {**data, "expected_active": str(stable.pk)})

    # Then
    assert applied.status_code == 302
    assert applied.url == f"{_agent_url(released_agent)}#canary-production"
    rollout = _rollout(released_agent)
    assert rollout.canary_version == v3
    assert rollout.steps == [[100, 900], [1000, 900], [5000, 900]]
    assert get_pointer(released_agent, production).canary == rollout
    entry = ReleaseLogEntry.objects.filter(environment=production).first()
    assert entry.kind == ReleaseKind.CANARY_START
    assert (entry.from_version, entry.to_version) == (stable, v3)
    assert entry.actor.username == "admin"
    assert entry.reason == "Try the new model."
    page = admin_client.get(applied.url).content.decode()
    assert "Started a canary of support-bot v3 in production at 1 %" in page


def test_canary_start_page__get__steps_from_policy_and_stable_version_not_offered(
    admin_client, released_agent, production
):
    CanaryPolicy.objects.create(environment=production, default_steps="2,20", bake_minutes=5)

    response = admin_client.get(_url("start", released_agent))

    assert response.status_code == 200
    form = response.context["form"]
    assert form.fields["steps"].initial == "2,20"
    offered = {v.version_number for v in form.fields["version"].queryset}
    assert offered == {1, 3}  # v2 is the stable version in production
    assert "Empty: 5 min, from the production canary policy." in response.content.decode()


def test_canary_start__one_percentage__single_step(admin_client, released_agent, production):
    v3 = _version(released_agent, 3)
    data = {"version": str(v3.pk), "mode": "percent", "percent": "12.5", "reason": "a slice"}

    confirmation = admin_client.post(_url("start", released_agent), data)
    stable_pk = get_pointer(released_agent, production).stable_version_id
    applied = admin_client.post(
        confirmation.context["apply_url"], {**data, "expected_active": str(stable_pk)}
    )

    assert applied.status_code == 302
    rollout = _rollout(released_agent)
    assert rollout.basis_points == 1250
    assert len(rollout.steps) == 1


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        ({"mode": "percent", "percent": "150"}, "percent", "must be more than 0 and less than 100"),
        ({"mode": "percent", "percent": ""}, "percent", "is required for a one-step canary"),
        ({"mode": "steps", "steps": "5,1"}, "steps", "must increase step by step; got 5,1."),
        ({"mode": "steps", "steps": "1,,5"}, "steps", "give one or more percentages"),
        ({"reason": "  "}, "reason", "is required: say why"),
        ({"bake_minutes": "-1"}, "bake_minutes", "greater than or equal to 0"),
    ],
)
def test_canary_start__bad_input__message_on_the_field_and_nothing_written(
    admin_client, released_agent, overrides, field, message
):
    v3 = _version(released_agent, 3)
    data = {"version": str(v3.pk), "mode": "steps", "steps": "1,5", "reason": "x", **overrides}
    count = _log_count()

    for url in (_url("start", released_agent), _url("start_apply", released_agent)):
        response = admin_client.post(url, data)

        assert response.status_code == 200
        assert field in response.context["form"].errors
        assert message in response.content.decode()
        assert "apply_url" not in response.context
    assert not CanaryRollout.objects.exists()
    assert _log_count() == count


def test_canary_start__while_a_canary_runs__refused_with_message_and_nothing_written(
    admin_client, canary_agent, production
):
    v3 = _version(canary_agent, 3)
    stable = get_pointer(canary_agent, production).stable_version
    count = _log_count()
    data = {
        "version": str(v3.pk),
        "mode": "steps",
        "steps": "1,5",
        "reason": "a second one",
        "expected_active": str(stable.pk),
    }

    page = admin_client.get(_url("start", canary_agent))
    applied = admin_client.post(_url("start_apply", canary_agent), data)

    assert page.status_code == 200
    assert "A canary of v2 is already running in Production (at 1 %)" in page.content.decode()
    assert 'id="canary_start_form"' not in page.content.decode()
    assert applied.status_code == 409
    assert "already running" in applied.content.decode()
    assert CanaryRollout.objects.count() == 1
    assert _log_count() == count


def test_canary_start_apply__canary_started_elsewhere_meanwhile__conflict_shown_not_500(
    admin_client, released_agent, production
):
    # Given the confirmation was shown, then someone started a canary of v1
    v1, v3 = _version(released_agent, 1), _version(released_agent, 3)
    stable = get_pointer(released_agent, production).stable_version
    data = {"version": str(v3.pk), "mode": "steps", "steps": "1,5", "reason": "x"}
    admin_client.post(_url("start", released_agent), data)
    canary_helpers.start(v1, production, actor=factories.ACTOR, reason="other")

    response = admin_client.post(
        _url("start_apply", released_agent), {**data, "expected_active": str(stable.pk)}
    )

    assert response.status_code == 409
    assert "A canary of v1 is already running" in response.content.decode()
    assert _rollout(released_agent).canary_version == v1


def test_canary_start_apply__stable_moved_since_confirmation__confirmation_shown_again(
    admin_client, released_agent, production
):
    v1, v3 = _version(released_agent, 1), _version(released_agent, 3)
    v2_pk = get_pointer(released_agent, production).stable_version_id
    factories.deploy(v1, production)

    response = admin_client.post(
        _url("start_apply", released_agent),
        {
            "version": str(v3.pk),
            "mode": "steps",
            "steps": "1,5",
            "reason": "x",
            "expected_active": str(v2_pk),
        },
    )

    assert response.status_code == 200
    assert "changed to v1 while you were reviewing" in response.content.decode()
    assert "v1 → v3" in response.content.decode()
    assert not CanaryRollout.objects.exists()


def test_canary_start_apply__service_refuses_environment_needs_approval__403_nothing_written(
    admin_client, released_agent, production
):
    # Given production takes releases only with an approved request (deployments.approvals)
    production.required_approvals = 1
    production.save()
    v3 = _version(released_agent, 3)
    stable = get_pointer(released_agent, production).stable_version
    count = _log_count()

    # When the confirmed form is applied
    response = admin_client.post(
        _url("start_apply", released_agent),
        {
            "version": str(v3.pk),
            "mode": "steps",
            "steps": "1,5",
            "reason": "x",
            "expected_active": str(stable.pk),
        },
    )

    # Then the service's refusal is the 403 page, and nothing was written
    assert response.status_code == 403
    assert "production requires 1 approval" in response.content.decode()
    assert not CanaryRollout.objects.exists()
    assert _log_count() == count


def test_canary_start_page__never_deployed__says_deploy_first(admin_client, agent, staging):
    factories.create_version(agent)

    response = admin_client.get(_url("start", agent, "staging"))

    assert response.status_code == 200
    assert "has no stable version in Staging yet" in response.content.decode()
    assert response.context["form"] is None


# --- advance, promote, abort, change percentage ----------------------------------------


def _confirm_and_apply(client: Client, agent, action: str, data: dict) -> tuple:
    confirmation = client.post(_url(action, agent), data)
    assert confirmation.status_code == 200, confirmation.content.decode()
    assert confirmation.context["apply_url"] == _url(f"{action}_apply", agent)
    state = confirmation.context["canary_state"]
    applied = client.post(confirmation.context["apply_url"], {**data, "expected_canary": state})
    return confirmation, applied


def test_canary_advance__confirmed__next_step_and_release_log_as_user(
    canary_client, canary_agent, production
):
    # When
    confirmation, applied = _confirm_and_apply(
        canary_client, canary_agent, "advance", {"reason": "Looks fine."}
    )

    # Then the confirmation said what would happen, and it happened
    assert "to step 2: <strong>5 %</strong> of users" in confirmation.content.decode()
    assert applied.status_code == 302
    rollout = _rollout(canary_agent)
    assert (rollout.step_index, rollout.basis_points) == (1, 500)
    entry = ReleaseLogEntry.objects.filter(environment=production).first()
    assert entry.kind == ReleaseKind.CANARY_CHANGE
    assert entry.details["to_percent"] == 5
    assert entry.actor == applied.wsgi_request.user
    assert entry.actor_label == applied.wsgi_request.user.username
    assert entry.reason == "Looks fine."


def test_canary_promote__confirmed__canary_is_stable_and_logged(
    admin_client, canary_agent, production
):
    confirmation, applied = _confirm_and_apply(
        admin_client, canary_agent, "promote", {"reason": "v2 is better."}
    )

    assert "v1 → v2" in confirmation.content.decode()  # the configuration comparison
    assert applied.status_code == 302
    pointer = get_pointer(canary_agent, production)
    assert pointer.stable_version.version_number == 2
    assert pointer.canary is None
    rollout = CanaryRollout.objects.get()
    assert (rollout.status, rollout.ended_by_label) == (CanaryStatus.PROMOTED, "admin")
    entry = ReleaseLogEntry.objects.filter(environment=production).first()
    assert (entry.kind, entry.actor.username, entry.reason) == (
        ReleaseKind.PROMOTE,
        "admin",
        "v2 is better.",
    )
    page = admin_client.get(applied.url).content.decode()
    assert "Promoted support-bot v2 in production: it is the stable version now (was v1)." in page


def test_canary_abort__confirmed__everyone_back_on_stable(admin_client, canary_agent, production):
    confirmation, applied = _confirm_and_apply(
        admin_client, canary_agent, "abort", {"reason": "Billing answers are wrong."}
    )

    assert "everyone in Production gets the stable <strong>v1</strong>" in (
        confirmation.content.decode()
    )
    assert applied.status_code == 302
    pointer = get_pointer(canary_agent, production)
    assert (pointer.stable_version.version_number, pointer.canary) == (1, None)
    assert CanaryRollout.objects.get().status == CanaryStatus.ABORTED
    entry = ReleaseLogEntry.objects.filter(environment=production).first()
    assert (entry.kind, entry.actor.username) == (ReleaseKind.CANARY_ABORT, "admin")


def test_canary_percent__confirmed__new_share_and_later_steps_kept_above_it(
    admin_client, canary_agent, production
):
    confirmation, applied = _confirm_and_apply(
        admin_client, canary_agent, "percent", {"percent": "10", "reason": "More traffic."}
    )

    assert [s.percent for s in confirmation.context["new_steps"]] == [10, 25, 50]
    assert applied.status_code == 302
    rollout = _rollout(canary_agent)
    assert rollout.basis_points == 1000
    assert [bp for bp, _ in rollout.steps] == [1000, 2500, 5000]
    entry = ReleaseLogEntry.objects.filter(environment=production).first()
    assert (entry.kind, entry.details["from_percent"], entry.details["to_percent"]) == (
        ReleaseKind.CANARY_CHANGE,
        1,
        10,
    )


@pytest.mark.parametrize(
    ("percent", "message"),
    [
        ("150", "must be more than 0 and less than 100"),
        ("abc", "is not a number"),
        ("1", "the canary already runs at 1 %."),
        ("", "This field is required."),
    ],
)
def test_canary_percent__bad_percentage__message_and_nothing_written(
    admin_client, canary_agent, percent, message
):
    rollout = _rollout(canary_agent)
    count = _log_count()

    confirmation = admin_client.post(
        _url("percent", canary_agent), {"percent": percent, "reason": "x"}
    )
    applied = admin_client.post(
        _url("percent_apply", canary_agent),
        {"percent": percent, "reason": "x", "expected_canary": _state(rollout)},
    )

    for response in (confirmation, applied):
        assert response.status_code == 200
        assert "percent" in response.context["form"].errors
        assert message in response.content.decode()
    assert _rollout(canary_agent).basis_points == 100
    assert _log_count() == count


@pytest.mark.parametrize("action", ACTIONS)
def test_canary_action__empty_reason__error_and_nothing_written(admin_client, canary_agent, action):
    rollout = _rollout(canary_agent)
    count = _log_count()
    data = {"reason": "", "percent": "10", "expected_canary": _state(rollout)}

    confirmation = admin_client.post(_url(action, canary_agent), data)
    applied = admin_client.post(_url(f"{action}_apply", canary_agent), data)

    for response in (confirmation, applied):
        assert response.status_code == 200
        assert "is required: say why" in response.content.decode()
    assert _log_count() == count
    assert _state(_rollout(canary_agent)) == _state(rollout)


def test_canary_advance__at_last_step__refused_with_message(admin_client, agent, production):
    # Given a one-step canary
    v1, v2 = factories.create_version(agent), factories.create_version(agent)
    factories.deploy(v1, production)
    rollout = canary_helpers.start(v2, production, actor=factories.ACTOR, reason="x", percent="5")
    count = _log_count()

    page = admin_client.get(_url("advance", agent))
    confirmation = admin_client.post(_url("advance", agent), {"reason": "go"})
    applied = admin_client.post(
        _url("advance_apply", agent), {"reason": "go", "expected_canary": _state(rollout)}
    )

    assert "no step to advance to: promote it or abort it" in page.content.decode()
    assert 'id="canary_advance_form"' not in page.content.decode()
    assert "apply_url" not in confirmation.context
    assert applied.status_code == 409
    assert _log_count() == count
    # And the panel offers no Advance… button
    assert _url("advance", agent) not in admin_client.get(_agent_url(agent)).content.decode()


def test_canary_action_apply__canary_moved_since_confirmation__confirmation_shown_again(
    admin_client, canary_agent, production
):
    # Given the user reviewed "advance from 1 %", then the canary moved to 5 %
    before = _state(_rollout(canary_agent))
    canary_services.advance_canary(
        agent=canary_agent, environment=production, actor=factories.ACTOR, reason="analysis"
    )
    count = _log_count()

    response = admin_client.post(
        _url("advance_apply", canary_agent), {"reason": "go", "expected_canary": before}
    )

    assert response.status_code == 200
    content = response.content.decode()
    assert "changed while you were reviewing" in content
    assert "to step 3: <strong>25 %</strong>" in content
    assert _rollout(canary_agent).basis_points == 500
    assert _log_count() == count


@pytest.mark.parametrize("action", ACTIONS)
def test_canary_action__no_canary_running__404_page_with_message(
    admin_client, released_agent, action
):
    page = admin_client.get(_url(action, released_agent))
    applied = admin_client.post(
        _url(f"{action}_apply", released_agent),
        {"reason": "x", "percent": "5", "expected_canary": ""},
    )

    for response in (page, applied):
        assert response.status_code == 404
        assert "No canary of support-bot is running in Production" in response.content.decode()


@pytest.mark.parametrize("action", ("start", *ACTIONS))
def test_canary_apply__get__405_and_nothing_changes(admin_client, canary_agent, action):
    rollout = _rollout(canary_agent)
    count = _log_count()

    response = admin_client.get(
        _url(f"{action}_apply", canary_agent),
        {"reason": "via GET", "percent": "10", "expected_canary": _state(rollout)},
    )

    assert response.status_code == 405
    assert _state(_rollout(canary_agent)) == _state(rollout)
    assert _log_count() == count


@pytest.mark.parametrize("fixture", ["staff_client", "viewer_client"])
@pytest.mark.parametrize("action", ("start", *ACTIONS))
def test_canary_pages__staff_without_manage_canary__403_and_nothing_changes(
    request, canary_agent, fixture, action
):
    client = request.getfixturevalue(fixture)
    rollout = _rollout(canary_agent)
    count = _log_count()
    data = {
        "version": str(_version(canary_agent, 3).pk),
        "mode": "steps",
        "steps": "1,5",
        "percent": "10",
        "reason": "try",
        "expected_canary": _state(rollout),
        "expected_active": str(rollout.stable_version_id),
    }

    responses = [
        client.get(_url(action, canary_agent)),
        client.post(_url(action, canary_agent), data),
        client.post(_url(f"{action}_apply", canary_agent), data),
    ]

    assert [r.status_code for r in responses] == [403, 403, 403]
    if fixture == "viewer_client":
        assert "deployments.manage_canary" in responses[-1].content.decode()
    assert _state(_rollout(canary_agent)) == _state(rollout)
    assert _log_count() == count


def test_canary_page__unknown_environment__404(admin_client, canary_agent):
    assert admin_client.get(_url("advance", canary_agent, "moon")).status_code == 404


def test_canary_apply__anonymous__redirected_to_login(client, canary_agent):
    rollout = _rollout(canary_agent)

    response = client.post(
        _url("abort_apply", canary_agent), {"reason": "x", "expected_canary": _state(rollout)}
    )

    assert response.status_code == 302
    assert "/login/" in response.url
    assert _rollout(canary_agent).is_running


def test_agent_list__running_canary__shown_next_to_the_stable_version(admin_client, canary_agent):
    response = admin_client.get(reverse("admin:agentconfig_agent_changelist"))

    assert "production: v1 + canary v2 at 1 %" in response.content.decode()
