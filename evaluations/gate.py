"""The evaluation gate: may a version start a canary in, or be deployed to, an environment?

    check_gate(agent=, environment=, version=) -> GateResult          (a read)
    release_check(environment, version) -> details   (registered in deployments.release_checks)
    compare_with_stable(agent=, environment=, version=, tolerance=None) -> GateResult
        (the comparison alone, whether or not the environment requires it: for CI)

The rule: if the environment's evaluation policy requires evaluation, the version's
latest completed run on the policy's suite must score at least the score of the version
now stable there, on the SAME suite version (and, when the suite has llm_judge cases,
with the same judge model and prompt), minus the policy's tolerance. Otherwise the gate
refuses ("evaluation regression", "not evaluated yet", "the stable version has no run on
suite vN") unless a reviewer recorded an override with a reason.

Invariants:
- check_gate writes nothing and calls no model; it only reads runs that exist.
- Only runs that asked the model count (recorded answers are self-reported).
- A first release (no stable version in the environment) passes once the version has a
  completed run: there is nothing to regress from, and the score is shown.
- An override is append-only, one per (agent, environment, version), needs the
  permission evaluations.override_gate, and is accepted only while the gate refuses.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

from agentconfig.core.errors import Conflict
from agentconfig.models import Agent
from deployments.models import Environment, Pointer
from evaluations.endpoint import resolve_run_settings
from evaluations.models import (
    AnswerSource,
    EvaluationRun,
    EvaluationSuite,
    GateOverride,
    RunStatus,
    Scorer,
    SuiteVersion,
)
from evaluations.selectors import get_policy
from versions.models import AgentVersion

OVERRIDE_PERMISSION = "evaluations.override_gate"
# The tolerance when an environment has no evaluation policy (the policy's default).
DEFAULT_TOLERANCE = 0.02
# Scores are means of floats: equal scores must compare equal after rounding noise.
EPSILON = 1e-9


class GateStatus(StrEnum):
    NOT_REQUIRED = "not_required"
    PASSED = "passed"
    FIRST_RELEASE = "first_release"
    ALREADY_STABLE = "already_stable"
    REGRESSION = "regression"
    NOT_EVALUATED = "not_evaluated"
    NO_BASELINE_RUN = "no_baseline_run"
    NO_SUITE = "no_suite"


PASSING = (
    GateStatus.NOT_REQUIRED,
    GateStatus.PASSED,
    GateStatus.FIRST_RELEASE,
    GateStatus.ALREADY_STABLE,
)
TITLES = {
    GateStatus.NOT_REQUIRED: "evaluation not required",
    GateStatus.PASSED: "evaluation passed",
    GateStatus.FIRST_RELEASE: "evaluated (first release here)",
    GateStatus.ALREADY_STABLE: "already the stable version",
    GateStatus.REGRESSION: "evaluation regression",
    GateStatus.NOT_EVALUATED: "not evaluated yet",
    GateStatus.NO_BASELINE_RUN: "the stable version has no comparable run",
    GateStatus.NO_SUITE: "no evaluation suite",
}


@dataclass(frozen=True)
class GateResult:
    """What the gate decided and why, with the runs it compared."""

    allowed: bool  # passed, not required, or overridden
    required: bool
    status: GateStatus  # the verdict of the scores alone (an override does not change it)
    explanation: str
    tolerance: float | None = None
    suite_version: SuiteVersion | None = None
    candidate_run: EvaluationRun | None = None
    baseline_run: EvaluationRun | None = None
    stable_version: AgentVersion | None = None
    override: GateOverride | None = None

    @property
    def passed(self) -> bool:
        return self.status in PASSING

    @property
    def title(self) -> str:
        """A few words for a badge: "evaluation regression", "overridden", ..."""
        if not self.passed and self.override is not None:
            return f"overridden ({TITLES[self.status]})"
        return TITLES[self.status]


def check_gate(*, agent: Agent, environment: Environment, version: AgentVersion) -> GateResult:
    """Whether `version` may start a canary in or be deployed to `environment`, and why."""
    policy = get_policy(environment)
    if policy is None or not policy.required:
        return GateResult(
            allowed=True,
            required=False,
            status=GateStatus.NOT_REQUIRED,
            explanation=f"{environment.slug} does not require evaluation.",
        )
    verdict = compare_with_stable(agent=agent, environment=environment, version=version)
    if verdict.passed:
        return verdict
    override = (
        GateOverride.objects.filter(agent=agent, environment=environment, version=version)
        .select_related("actor")
        .first()
    )
    if override is None:
        return verdict
    return replace(
        verdict,
        allowed=True,
        explanation=(
            f"{verdict.explanation} Overridden by {override.actor_label} on "
            f"{override.created_at:%Y-%m-%d %H:%M} UTC: {override.reason}"
        ),
        override=override,
    )


def latest_scorable_run(
    version: AgentVersion,
    *,
    suite: EvaluationSuite | None = None,
    suite_version: SuiteVersion | None = None,
    judge_of: EvaluationRun | None = None,
    base_url: str | None = None,
) -> EvaluationRun | None:
    """The version's most recently finished completed run that asked the model (on that
    suite version and endpoint, when given)."""
    runs = EvaluationRun.objects.filter(
        version=version, status=RunStatus.COMPLETED, answer_source=AnswerSource.MODEL
    )
    if base_url is not None:
        runs = runs.filter(base_url=base_url)
    if suite is not None:
        runs = runs.filter(suite_version__suite=suite)
    if suite_version is not None:
        runs = runs.filter(suite_version=suite_version)
    if judge_of is not None:
        runs = runs.filter(judge_model=judge_of.judge_model, judge_prompt=judge_of.judge_prompt)
    return (
        runs.select_related("suite_version__suite", "version")
        .order_by("-finished_at", "-created_at")
        .first()
    )


def resolve_suite(agent: Agent, suite_slug: str) -> EvaluationSuite | str:
    """The suite a policy names (or the agent's only one); a sentence saying why not."""
    suites = list(EvaluationSuite.objects.filter(agent=agent).order_by("slug"))
    if suite_slug:
        for suite in suites:
            if suite.slug == suite_slug:
                return suite
        known = ", ".join(s.slug for s in suites) or "none"
        return f"{agent.slug} has no evaluation suite {suite_slug!r} (its suites: {known})."
    if len(suites) == 1:
        return suites[0]
    if not suites:
        return f"{agent.slug} has no evaluation suite yet."
    return (
        f"{agent.slug} has {len(suites)} suites ({', '.join(s.slug for s in suites)}) and the "
        "evaluation policy names none; name one there."
    )


def compare_with_stable(
    *,
    agent: Agent,
    environment: Environment,
    version: AgentVersion,
    tolerance: float | None = None,
) -> GateResult:
    """The gate's comparison with the version stable in `environment`, required or not.

    check_gate uses it when the environment requires evaluation; `manage.py evaluate
    --baseline ENV` uses it in CI whatever the policy says. The policy's suite and
    tolerance apply when there is a policy; `tolerance` overrides the latter. Overrides
    are not considered: this is the verdict of the scores alone.
    """
    policy = get_policy(environment)
    required = bool(policy and policy.required)
    if tolerance is None:
        tolerance = policy.tolerance if policy else DEFAULT_TOLERANCE
    target = f"{version.label} of {agent.slug} into {environment.slug}"

    suite = resolve_suite(agent, policy.suite_slug if policy else "")
    if isinstance(suite, str):
        return _verdict(
            GateStatus.NO_SUITE,
            f"no evaluation suite to compare on: {suite} Create the suite (in the admin or "
            f"evals/{agent.slug}.yaml) and run {version.label} on it.",
            tolerance,
            required=required,
        )

    pointer = (
        Pointer.objects.filter(agent=agent, environment=environment)
        .select_related("stable_version")
        .first()
    )
    stable = pointer.stable_version if pointer else None
    if stable is not None and stable.pk == version.pk:
        return _verdict(
            GateStatus.ALREADY_STABLE,
            f"{version.label} is already the stable version in {environment.slug}.",
            tolerance,
            required=required,
            stable_version=stable,
        )

    # The gate's inputs are the policy's, not the candidate's: only runs on the suite's
    # current version, against the endpoint the policy names, count — otherwise whoever
    # must pass the gate could pick an easier suite version or a friendlier endpoint.
    pinned: dict[str, Any] = {}
    if policy is not None:
        pinned = {
            "pinned_suite_version": suite.versions.order_by("-version_number").first(),
            "pinned_base_url": resolve_run_settings(environment).base_url,
        }
    return compare_versions(
        version=version,
        baseline=stable,
        suite=suite,
        tolerance=tolerance,
        required=required,
        **pinned,
        baseline_name=f"the stable version {stable.label}" if stable else "",
        tolerance_source=f" of {environment.slug}",
        verdict=f"{target} is allowed",
        first_release=(
            f"{agent.slug} has no stable version in {environment.slug} yet, so there is "
            "nothing to compare with"
        ),
    )


def compare_versions(
    *,
    version: AgentVersion,
    baseline: AgentVersion | None,
    suite: EvaluationSuite,
    tolerance: float,
    required: bool = False,
    baseline_name: str = "",
    tolerance_source: str = "",
    verdict: str = "no regression",
    first_release: str = "there is no baseline version to compare with",
    pinned_suite_version: SuiteVersion | None = None,
    pinned_base_url: str | None = None,
) -> GateResult:
    """The gate's rule between two versions of one agent on `suite` (the scores alone).

    The candidate's latest completed model run on the suite names the suite version; the
    baseline's latest completed model run on that same suite version (with the same judge
    when the suite has llm_judge cases) must exist, and the candidate must score at least
    the baseline's score minus `tolerance`.
    """
    baseline_name = baseline_name or (f"the baseline {baseline.label}" if baseline else "")
    candidate = latest_scorable_run(
        version, suite=suite, suite_version=pinned_suite_version, base_url=pinned_base_url
    )
    pinned = pinned_suite_version is not None or pinned_base_url is not None
    if candidate is None and pinned and latest_scorable_run(version, suite=suite) is not None:
        label = pinned_suite_version.label if pinned_suite_version else "its current version"
        where = f" against {pinned_base_url}" if pinned_base_url else ""
        return _verdict(
            GateStatus.NOT_EVALUATED,
            f"not evaluated on what the policy names: {version.label} has no completed run on "
            f"{suite.slug} {label}{where}. Runs on other suite versions or endpoints do not "
            "count. Start a run with this environment's settings, or ask a reviewer to "
            "override with a reason.",
            tolerance,
            required=required,
            stable_version=baseline,
        )
    if candidate is None:
        return _verdict(
            GateStatus.NOT_EVALUATED,
            f"not evaluated yet: {version.label} has no completed run on the suite "
            f"{suite.slug}. Start a run, or ask a reviewer to override with a reason.",
            tolerance,
            required=required,
            stable_version=baseline,
        )
    suite_version = candidate.suite_version
    score_text = f"{version.label} scored {candidate.score:.3f} on {suite_version.label}"

    if baseline is None:
        return _verdict(
            GateStatus.FIRST_RELEASE,
            f"{score_text}; {first_release}.",
            tolerance,
            required=required,
            suite_version=suite_version,
            candidate_run=candidate,
        )

    judged = suite_version.cases.filter(scorer=Scorer.LLM_JUDGE).exists()
    baseline_run = latest_scorable_run(
        baseline,
        suite_version=suite_version,
        judge_of=candidate if judged else None,
        base_url=pinned_base_url,
    )
    if baseline_run is None:
        judge = f" with the judge {candidate.judge_model} and the same prompt" if judged else ""
        return _verdict(
            GateStatus.NO_BASELINE_RUN,
            f"{score_text}, but {baseline_name} has no completed run on "
            f"{suite_version.label}{judge} to compare with. Run {baseline.label} on "
            f"{suite_version.label} too.",
            tolerance,
            required=required,
            suite_version=suite_version,
            candidate_run=candidate,
            stable_version=baseline,
        )

    assert candidate.score is not None and baseline_run.score is not None  # noqa: S101 - completed
    needed = baseline_run.score - tolerance
    comparison = (
        f"{score_text}; {baseline_name} scored {baseline_run.score:.3f}; with the tolerance "
        f"{tolerance:g}{tolerance_source}, at least {max(needed, 0):.3f} is needed"
    )
    if candidate.score + EPSILON >= needed:
        status, explanation = GateStatus.PASSED, f"{comparison}: {verdict}."
    else:
        status = GateStatus.REGRESSION
        explanation = f"evaluation regression: {comparison}. A reviewer may override with a reason."
    return _verdict(
        status,
        explanation,
        tolerance,
        required=required,
        suite_version=suite_version,
        candidate_run=candidate,
        baseline_run=baseline_run,
        stable_version=baseline,
    )


def _verdict(
    status: GateStatus,
    explanation: str,
    tolerance: float,
    *,
    required: bool,
    suite_version: SuiteVersion | None = None,
    candidate_run: EvaluationRun | None = None,
    baseline_run: EvaluationRun | None = None,
    stable_version: AgentVersion | None = None,
) -> GateResult:
    # The scores alone decide here: a passing status allows, any other refuses until a
    # reviewer overrides it (check_gate).
    return GateResult(
        allowed=status in PASSING,
        required=required,
        status=status,
        explanation=explanation,
        tolerance=tolerance,
        suite_version=suite_version,
        candidate_run=candidate_run,
        baseline_run=baseline_run,
        stable_version=stable_version,
    )


def release_check(environment: Environment, version: AgentVersion) -> dict[str, Any]:
    """The gate as a release check (deployments.release_checks): refuse a version the gate
    does not allow; the release-log details that record the gate's verdict."""
    gate = check_gate(agent=version.agent, environment=environment, version=version)
    if not gate.allowed:
        raise Conflict(
            f"{gate.title}: {gate.explanation} A reviewer can override the gate with a reason "
            "(permission evaluations.override_gate)."
        )
    if not gate.required:
        return {}
    details: dict[str, Any] = {"evaluation": str(gate.status)}
    if gate.override is not None:
        details["evaluation_override"] = gate.override.pk
    return details
