"""Reads about suites and runs that several entry points share (admin, CLI, review screens)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db.models import Count, QuerySet

from agentconfig.core.errors import NotFound
from agentconfig.models import Agent
from deployments.models import Environment
from evaluations.models import (
    CaseResult,
    EvalCase,
    EvaluationPolicy,
    EvaluationRun,
    EvaluationSuite,
    RunStatus,
    SuiteVersion,
)

# A score change smaller than this is noise from float arithmetic, not a change.
SCORE_EPSILON = 1e-9


def get_policy(environment: Environment | None) -> EvaluationPolicy | None:
    """The environment's evaluation policy, if one was saved."""
    if environment is None:
        return None
    return EvaluationPolicy.objects.filter(environment=environment).first()


def get_suite(agent: Agent, slug: str) -> EvaluationSuite:
    """The agent's suite with `slug`, or NotFound naming the ones that exist."""
    try:
        return EvaluationSuite.objects.select_related("agent").get(agent=agent, slug=slug)
    except EvaluationSuite.DoesNotExist:
        known = ", ".join(agent.evaluation_suites.values_list("slug", flat=True)) or "none"
        raise NotFound(f"{agent.slug} has no evaluation suite {slug!r} (known: {known}).") from None


def get_latest_suite_version(suite: EvaluationSuite) -> SuiteVersion | None:
    """The suite's newest version, or None if it has none yet."""
    return suite.versions.select_related("suite__agent").order_by("-version_number").first()


def list_runs_with_progress(queryset: QuerySet[EvaluationRun]) -> QuerySet[EvaluationRun]:
    """Runs annotated with `cases_done` (the number of cases with a result)."""
    return queryset.select_related(
        "agent", "version", "suite_version__suite", "environment"
    ).annotate(cases_done=Count("results"))


def get_run_progress(run: EvaluationRun) -> tuple[int, int]:
    """(cases done, cases in total) of a run."""
    return CaseResult.objects.filter(run=run).count(), run.cases_total


@dataclass(frozen=True)
class CaseRow:
    """One case of a run for display: the case, its result (None: not done yet)."""

    case: EvalCase
    result: CaseResult | None

    @property
    def state(self) -> str:
        if self.result is None:
            return "pending"
        return "error" if self.result.score is None else "scored"


def list_case_rows(run: EvaluationRun) -> list[CaseRow]:
    """Every case of the run's suite version in order, with its result if it has one."""
    results = {r.case_id: r for r in CaseResult.objects.filter(run=run)}
    cases = EvalCase.objects.filter(suite_version_id=run.suite_version_id).order_by("position")
    return [CaseRow(case, results.get(case.pk)) for case in cases]


def list_comparable_runs(run: EvaluationRun) -> QuerySet[EvaluationRun]:
    """Other completed runs on the same suite version (other versions first), newest first."""
    return (
        EvaluationRun.objects.filter(
            suite_version_id=run.suite_version_id, status=RunStatus.COMPLETED
        )
        .exclude(pk=run.pk)
        .select_related("version")
        .order_by("-finished_at")
    )


def build_run_comparison(
    candidate_run: EvaluationRun, baseline_run: EvaluationRun
) -> dict[str, Any]:
    """The two runs side by side per case, regressions first (largest score drop first).

    Cases are matched by their id, so runs on two versions of a suite compare too; a
    case only one of them has shows on one side. An error counts as a score of 0, as in
    the run's score. Keys: candidate, baseline, same_suite_version, score_delta, rows,
    regressions, improvements, unchanged, errors. Each row: key, case, candidate,
    baseline (CaseResult or None), candidate_score, baseline_score, delta, change
    ("regression", "improvement", "unchanged", "added", "removed", "pending").
    """
    candidate_results = _results_by_key(candidate_run)
    baseline_results = _results_by_key(baseline_run)
    candidate_cases = _cases_by_key(candidate_run)
    baseline_cases = _cases_by_key(baseline_run)

    rows: list[dict[str, Any]] = []
    order = list(candidate_cases) + [k for k in baseline_cases if k not in candidate_cases]
    for position, key in enumerate(order):
        case = candidate_cases.get(key) or baseline_cases[key]
        new, old = candidate_results.get(key), baseline_results.get(key)
        new_score = _effective(new)
        old_score = _effective(old)
        delta = None
        if key not in baseline_cases:
            change = "added"
        elif key not in candidate_cases:
            change = "removed"
        elif new_score is None or old_score is None:
            change = "pending"
        else:
            delta = new_score - old_score
            if delta < -SCORE_EPSILON:
                change = "regression"
            elif delta > SCORE_EPSILON:
                change = "improvement"
            else:
                change = "unchanged"
        rows.append(
            {
                "key": key,
                "case": case,
                "candidate": new,
                "baseline": old,
                "candidate_score": new_score,
                "baseline_score": old_score,
                "delta": delta,
                "change": change,
                "position": position,
            }
        )
    rank = {"regression": 0, "pending": 2, "added": 3, "removed": 3}
    rows.sort(
        key=lambda row: (
            rank.get(row["change"], 1),
            row["delta"] if row["change"] == "regression" else 0,
            row["position"],
        )
    )
    score_delta = (
        candidate_run.score - baseline_run.score
        if candidate_run.score is not None and baseline_run.score is not None
        else None
    )
    return {
        "candidate": candidate_run,
        "baseline": baseline_run,
        "same_suite_version": candidate_run.suite_version_id == baseline_run.suite_version_id,
        "score_delta": score_delta,
        "rows": rows,
        "regressions": sum(1 for row in rows if row["change"] == "regression"),
        "improvements": sum(1 for row in rows if row["change"] == "improvement"),
        "unchanged": sum(1 for row in rows if row["change"] == "unchanged"),
        "errors": sum(
            1
            for row in rows
            for result in (row["candidate"], row["baseline"])
            if result is not None and result.score is None
        ),
    }


def _results_by_key(run: EvaluationRun) -> dict[str, CaseResult]:
    return {
        result.case.key: result
        for result in CaseResult.objects.filter(run=run).select_related("case")
    }


def _cases_by_key(run: EvaluationRun) -> dict[str, EvalCase]:
    cases = EvalCase.objects.filter(suite_version_id=run.suite_version_id).order_by("position")
    return {case.key: case for case in cases}


def _effective(result: CaseResult | None) -> float | None:
    if result is None:
        return None
    return 0.0 if result.score is None else result.score
