"""Building suites and runs through the real services (tests only)."""

from __future__ import annotations

from typing import Any

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
