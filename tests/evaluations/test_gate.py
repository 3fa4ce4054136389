"""The evaluation gate: allowing, blocking, requiring a run, and overrides (with permission)."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from agentconfig.core.actors import Actor
from agentconfig.core.errors import Conflict, Forbidden, ImmutableRecord
from evaluations.gate import GateStatus, check_gate
from evaluations.models import GateOverride
from evaluations.services.gate_overrides import record_gate_override
from tests import factories
from tests.evaluations.helpers import (
    ACTOR,
    YES_CASES,
    answer_yes,
    case,
    make_suite,
    require_evaluation,
    run_now,
    stable_and_candidate,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def released(agent, production, eval_settings, llm):
    """support-bot: v1 (model good) stable in production and scored 1.0; v2 (model worse)."""
    return stable_and_candidate(agent, production, llm)


def test_gate__environment_without_policy__allowed_not_required(agent, production):
    version = factories.create_version(agent)

    result = check_gate(agent=agent, environment=production, version=version)

    assert result.allowed and not result.required
    assert result.status == GateStatus.NOT_REQUIRED


def test_gate__candidate_within_tolerance__allowed_with_both_runs(released, agent, production, llm):
    # Given the stable scored 1.0, tolerance 0.25, the candidate 0.75
    stable, candidate, suite_version = released
    require_evaluation(production, tolerance=0.25)
    answer_yes(llm, "worse", 3)
    candidate_run = run_now(candidate, suite_version)

    # When
    result = check_gate(agent=agent, environment=production, version=candidate)

    # Then
    assert result.allowed and result.required and result.status == GateStatus.PASSED
    assert result.candidate_run == candidate_run and result.baseline_run.version == stable
    assert result.suite_version == suite_version and result.tolerance == 0.25
    assert "v2 scored 0.750 on smoke v1; the stable version v1 scored 1.000" in result.explanation


def test_gate__regression_beyond_tolerance__refused_as_evaluation_regression(
    released, agent, production, llm
):
    # Given the stable scored 1.0, tolerance 0.1, the candidate 0.5
    _, candidate, suite_version = released
    require_evaluation(production, tolerance=0.1)
    answer_yes(llm, "worse", 2)
    run_now(candidate, suite_version)

    # When
    result = check_gate(agent=agent, environment=production, version=candidate)

    # Then
    assert not result.allowed and result.status == GateStatus.REGRESSION
    assert result.title == "evaluation regression"
    assert result.explanation.startswith("evaluation regression: v2 scored 0.500")
    assert "at least 0.900 is needed" in result.explanation


def test_gate__latest_completed_run_counts__a_newer_good_run_lifts_the_block(
    released, agent, production, llm
):
    _, candidate, suite_version = released
    require_evaluation(production, tolerance=0.0)
    answer_yes(llm, "worse", 2)
    run_now(candidate, suite_version)
    answer_yes(llm, "worse", 4)
    run_now(candidate, suite_version)

    result = check_gate(agent=agent, environment=production, version=candidate)

    assert result.allowed and result.candidate_run.score == 1.0


def test_gate__candidate_never_run__refused_not_evaluated(released, agent, production):
    _, candidate, _ = released
    require_evaluation(production)

    result = check_gate(agent=agent, environment=production, version=candidate)

    assert not result.allowed and result.status == GateStatus.NOT_EVALUATED
    assert result.explanation.startswith("not evaluated yet: v2 has no completed run")


def test_gate__stable_has_no_run_on_the_candidates_suite_version__refused(
    released, agent, production, llm
):
    # Given the suite got a v2 and only the candidate ran on it
    _, candidate, _ = released
    require_evaluation(production)
    newer = make_suite(
        agent, [*YES_CASES, case("c5", "q5?", golden="yes", scorer="contains")], description="more"
    )
    run_now(candidate, newer)

    result = check_gate(agent=agent, environment=production, version=candidate)

    assert not result.allowed and result.status == GateStatus.NO_BASELINE_RUN
    assert "the stable version v1 has no completed run on smoke v2" in result.explanation


def test_gate__baseline_judged_by_another_judge__not_comparable(
    agent, production, eval_settings, llm
):
    # Given llm_judge cases, the stable judged by another judge model than the candidate
    stable = factories.create_version(agent)
    candidate = factories.create_version(agent)
    factories.deploy(stable, production)
    suite_version = make_suite(agent, [case("j", "q?")])
    require_evaluation(production)
    eval_settings.EVAL_JUDGE_MODEL = "judge-model"
    run_now(stable, suite_version)
    eval_settings.EVAL_JUDGE_MODEL = "judge-model"
    eval_settings.EVAL_JUDGE_PROMPT = "Grade strictly. Reply with JSON {score, rationale}."
    run_now(candidate, suite_version)

    result = check_gate(agent=agent, environment=production, version=candidate)

    assert result.status == GateStatus.NO_BASELINE_RUN
    assert "with the judge judge-model and the same prompt" in result.explanation


def test_gate__first_release_in_the_environment__allowed_once_evaluated(
    agent, production, eval_settings, llm
):
    version = factories.create_version(agent)
    suite_version = make_suite(agent, YES_CASES)
    require_evaluation(production)
    run_now(version, suite_version)

    result = check_gate(agent=agent, environment=production, version=version)

    assert result.allowed and result.status == GateStatus.FIRST_RELEASE


def test_gate__recorded_answer_runs__do_not_count(released, agent, production):
    _, candidate, suite_version = released
    require_evaluation(production)
    run_now(candidate, suite_version, recorded_answers={f"c{i}": "yes" for i in range(1, 5)})

    result = check_gate(agent=agent, environment=production, version=candidate)

    assert result.status == GateStatus.NOT_EVALUATED


def test_gate__policy_names_a_missing_suite__refused_saying_which(agent, production):
    version = factories.create_version(agent)
    make_suite(agent, YES_CASES)
    require_evaluation(production, suite_slug="release")

    result = check_gate(agent=agent, environment=production, version=version)

    assert result.status == GateStatus.NO_SUITE
    assert "support-bot has no evaluation suite 'release' (its suites: smoke)" in result.explanation


def test_override__reviewer_with_permission__recorded_and_the_gate_allows(
    released, agent, production, llm
):
    # Given a regression
    _, candidate, suite_version = released
    require_evaluation(production, tolerance=0.0)
    answer_yes(llm, "worse", 2)
    run_now(candidate, suite_version)
    reviewer = factories.user_with("evaluations.override_gate")

    # When
    override = record_gate_override(
        agent=agent,
        environment=production,
        version=candidate,
        actor=Actor.of(reviewer),
        reason="  The two failing cases test a policy we retired.  ",
    )

    # Then
    assert override.actor == reviewer and override.reason.startswith("The two failing")
    assert override.gate_status == "regression" and override.candidate_run is not None
    result = check_gate(agent=agent, environment=production, version=candidate)
    assert result.allowed and result.status == GateStatus.REGRESSION
    assert result.override == override and result.title == "overridden (evaluation regression)"
    assert "Overridden by" in result.explanation and "policy we retired" in result.explanation
    # The row is append-only.
    with pytest.raises(ImmutableRecord):
        override.delete()


def test_override__user_without_permission__forbidden_and_nothing_recorded(
    released, agent, production
):
    _, candidate, _ = released
    require_evaluation(production)
    user = factories.UserFactory()
    user.save()

    with pytest.raises(Forbidden) as refused:
        record_gate_override(
            agent=agent,
            environment=production,
            version=candidate,
            actor=Actor.of(user),
            reason="trust me",
        )

    assert "evaluations.override_gate" in refused.value.message
    assert GateOverride.objects.count() == 0


def test_override__gate_already_allows__refused_as_unneeded(agent, production):
    version = factories.create_version(agent)

    with pytest.raises(Conflict) as refused:
        record_gate_override(
            agent=agent, environment=production, version=version, actor=ACTOR, reason="why not"
        )

    assert "no override is needed" in refused.value.message


def test_override__twice__second_refused(released, agent, production):
    _, candidate, _ = released
    require_evaluation(production)
    record_gate_override(
        agent=agent, environment=production, version=candidate, actor=ACTOR, reason="urgent fix"
    )

    with pytest.raises(Conflict):
        record_gate_override(
            agent=agent, environment=production, version=candidate, actor=ACTOR, reason="again"
        )


def test_override__empty_reason__refused(released, agent, production):
    _, candidate, _ = released
    require_evaluation(production)

    with pytest.raises(ValidationError) as refused:
        record_gate_override(
            agent=agent, environment=production, version=candidate, actor=ACTOR, reason="  "
        )

    assert "reason" in refused.value.message_dict


def test_gate__candidate_ran_only_on_an_older_suite_version__refused(
    released, agent, production, llm
):
    # Given the candidate passed on suite v1, and the suite has a v2 since
    _, candidate, suite_v1 = released
    require_evaluation(production, tolerance=0.25)
    answer_yes(llm, "worse", 4)
    run_now(candidate, suite_v1)
    make_suite(
        agent, [*YES_CASES, case("c5", "q5?", golden="yes", scorer="contains")], description="+"
    )

    # When / Then: only the suite's current version counts, whatever the candidate picked
    result = check_gate(agent=agent, environment=production, version=candidate)
    assert not result.allowed and result.status == GateStatus.NOT_EVALUATED
    assert "not evaluated on what the policy names" in result.explanation
    assert "smoke v2" in result.explanation


def test_gate__candidate_ran_against_another_endpoint__refused(released, agent, production, llm):
    # Given a candidate run against the global endpoint, and a policy naming another one
    _, candidate, suite_version = released
    answer_yes(llm, "worse", 4)
    run_now(candidate, suite_version)
    policy = require_evaluation(production, tolerance=0.25)
    policy.base_url = "https://models.example.org/v1"
    policy.save()

    result = check_gate(agent=agent, environment=production, version=candidate)

    assert not result.allowed and result.status == GateStatus.NOT_EVALUATED
    assert "against https://models.example.org/v1" in result.explanation
