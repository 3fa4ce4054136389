"""Building suites and runs through the real services (tests only)."""

from __future__ import annotations

from typing import Any

from django.urls import reverse

from agentconfig.models import Agent
from deployments.models import Environment
from evaluations.models import EvaluationPolicy, EvaluationRun, SuiteVersion
from evaluations.runner import execute_run
from evaluations.services import suites as suite_services
from tests import factories
from versions.models import AgentVersion

ACTOR = factories.ACTOR


def case(
    key: str,
    question: str | None = None,
    golden: str = "yes",
    scorer: str = "llm_judge",
    **fields: Any,
) -> dict[str, Any]:
    return {
        "id": key,
        "input": question or f"question {key}",
        "golden_answer": golden,
        "scorer": scorer,
        **fields,
    }


def make_suite(
    agent: Agent, cases: list[dict[str, Any]], slug: str = "smoke", description: str = "first"
) -> SuiteVersion:
    """The suite `slug` of `agent` (created if missing) with a new version holding `cases`."""
    suite = agent.evaluation_suites.filter(slug=slug).first() or suite_services.create_suite(
        agent=agent, slug=slug, name=slug.title(), actor=ACTOR
    )
    return suite_services.create_suite_version(
        suite=suite, actor=ACTOR, cases=cases, change_description=description, source="cli"
    )


def run_now(version: AgentVersion, suite_version: SuiteVersion, **options: Any) -> EvaluationRun:
    """Create a run and execute it inline (what the worker does)."""
    run = suite_services.start_run(
        version=version, suite_version=suite_version, actor=ACTOR, enqueue=False, **options
    )
    return execute_run(run.pk)


def require_evaluation(
    environment: Environment, tolerance: float = 0.05, suite_slug: str = ""
) -> EvaluationPolicy:
    return EvaluationPolicy.objects.update_or_create(
        environment=environment,
        defaults={"required": True, "tolerance": tolerance, "suite_slug": suite_slug},
    )[0]


# Four "contains yes" cases: a version answering "yes" to k of them scores k/4.
YES_CASES = [case(f"c{i}", f"q{i}?", golden="yes", scorer="contains") for i in range(1, 5)]


def answer_yes(llm: Any, model: str, count: int) -> None:
    """The scripted `model` answers "yes" to the first `count` of YES_CASES, "no" to the rest."""
    for i in range(1, 5):
        llm.answers[(model, f"q{i}?")] = "yes" if i <= count else "no"


def stable_and_candidate(
    agent: Agent, production: Environment, llm: Any, candidate_yes: int | None = None
) -> tuple[AgentVersion, AgentVersion, SuiteVersion]:
    """v1 (model good) stable in production and scored 1.0 on YES_CASES; v2 (model worse),
    scored too when `candidate_yes` says how many cases it answers "yes" to."""
    stable = factories.create_version(agent, model="good")
    candidate = factories.create_version(agent, model="worse")
    factories.deploy(stable, production)
    suite_version = make_suite(agent, YES_CASES)
    answer_yes(llm, "good", 4)
    run_now(stable, suite_version)
    if candidate_yes is not None:
        answer_yes(llm, "worse", candidate_yes)
        run_now(candidate, suite_version)
    return stable, candidate, suite_version


def post_add_suite(client: Any, agent: Agent, cases: str, **fields: Any) -> Any:
    """Submit the admin's add-suite page: suite "release" of `agent` with these cases (YAML)."""
    return client.post(
        reverse("admin:evaluations_evaluationsuite_add"),
        {
            "agent": agent.pk,
            "slug": "release",
            "name": "",
            "description": "",
            "cases": cases,
            "change_description": "x",
            **fields,
        },
    )
