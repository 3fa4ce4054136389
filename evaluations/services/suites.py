"""Writes of suites, suite versions and runs; the admin, the CLI, the file import call these.

Invariants:
- Everything is validated before anything is written; a refused call writes nothing.
- Suite version numbers are assigned under a lock on the suite row (PostgreSQL) or the
  database write lock (SQLite, transaction_mode=IMMEDIATE); a suite version identical to
  the latest (same content hash) is refused, so an unchanged import writes nothing.
- A run and its queued task are written in one transaction (the task queue is a table in
  the same database): there is never a queued run without a task, or a task without a run.
- A run that asks a model is refused at once when no endpoint is configured, with a
  message naming what to set; it never fails later in the worker for that reason.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from agentconfig.core.actors import Actor
from agentconfig.core.errors import Conflict
from agentconfig.models import Agent
from deployments.models import Environment
from evaluations.cases import CaseError, content_hash, normalize_cases
from evaluations.endpoint import check_endpoint, require_base_url, resolve_run_settings
from evaluations.models import (
    FINISHED_STATUSES,
    AnswerSource,
    EvalCase,
    EvaluationRun,
    EvaluationSuite,
    RunStatus,
    Scorer,
    SuiteSource,
    SuiteVersion,
)
from versions.models import AgentVersion

ADD_SUITE_PERMISSION = "evaluations.add_evaluationsuite"
CHANGE_SUITE_PERMISSION = "evaluations.change_evaluationsuite"
ADD_SUITE_VERSION_PERMISSION = "evaluations.add_suiteversion"
RUN_PERMISSION = "evaluations.add_evaluationrun"
CANCEL_PERMISSION = "evaluations.change_evaluationrun"
MAX_CHANGE_DESCRIPTION = 2000


def validate_cases(cases: Any) -> list[dict[str, Any]]:
    """The normalised cases, or ValidationError on `cases` listing every problem."""
    try:
        return normalize_cases(cases)
    except CaseError as exc:
        raise ValidationError({"cases": [str(problem) for problem in exc.problems]}) from None


def validate_change_description(text: str | None) -> str:
    """The description, stripped; ValidationError if missing or too long."""
    text = (text or "").strip()
    if not text:
        raise ValidationError(
            {"change_description": "is required: say what changed in the suite and why."}
        )
    if len(text) > MAX_CHANGE_DESCRIPTION:
        raise ValidationError(
            {"change_description": f"is longer than {MAX_CHANGE_DESCRIPTION} characters."}
        )
    return text


def create_suite(
    *, agent: Agent, slug: str, name: str, description: str = "", actor: Actor
) -> EvaluationSuite:
    """Create an empty suite for `agent`; its cases come with create_suite_version."""
    actor.require(ADD_SUITE_PERMISSION, "create evaluation suites")
    suite = EvaluationSuite(agent=agent, slug=slug, name=(name or "").strip() or slug)
    suite.description = (description or "").strip()
    suite.full_clean(validate_unique=False)
    try:
        with transaction.atomic():
            suite.save()
    except IntegrityError:
        raise ValidationError(
            {"slug": f"{agent.slug} already has a suite with slug {slug!r}."}
        ) from None
    return suite


def update_suite(
    *, suite: EvaluationSuite, actor: Actor, name: str, description: str, reason: str = ""
) -> tuple[str, ...]:
    """Set the suite's name and description; returns the fields that changed."""
    changed = tuple(
        field
        for field, value in (("name", name), ("description", description))
        if getattr(suite, field) != value
    )
    if not changed:
        return ()
    actor.require(CHANGE_SUITE_PERMISSION, "change evaluation suites")
    suite.name, suite.description = name, description
    suite.full_clean(validate_unique=False)
    # simple-history reads these two attributes for the history row (not model fields).
    suite._history_user = actor.user  # type: ignore[attr-defined]
    suite._change_reason = (reason or actor.label)[:100]  # type: ignore[attr-defined]
    suite.save()
    return changed


def create_suite_version(
    *,
    suite: EvaluationSuite,
    actor: Actor,
    cases: Sequence[Mapping[str, Any]],
    change_description: str,
    source: SuiteSource | str,
    source_path: str = "",
) -> SuiteVersion:
    """Create the suite's next version with `cases`; refused if identical to the latest."""
    actor.require(ADD_SUITE_VERSION_PERMISSION, "create suite versions")
    normalized = validate_cases(cases)
    description = validate_change_description(change_description)
    if source not in SuiteSource.values:
        raise ValidationError({"source": f"unknown source {source!r}."})
    digest = content_hash(normalized)
    try:
        with transaction.atomic():
            # The suite row lock serialises creators, so "latest + 1" is read once.
            EvaluationSuite.objects.select_for_update().only("pk").get(pk=suite.pk)
            latest = suite.versions.order_by("-version_number").first()
            if latest is not None and latest.content_hash == digest:
                raise ValidationError(
                    f"no changes compared to {suite.slug} v{latest.version_number}."
                )
            version = SuiteVersion.objects.create(
                suite=suite,
                version_number=(latest.version_number + 1) if latest else 1,
                content_hash=digest,
                case_count=len(normalized),
                change_description=description,
                source=source,
                source_path=source_path,
                created_by=actor.user,
                created_by_label=actor.label,
            )
            EvalCase.objects.bulk_create(
                EvalCase(
                    suite_version=version,
                    position=position,
                    key=case["id"],
                    messages=case["messages"],
                    golden_answer=case["golden_answer"],
                    criteria=case["criteria"],
                    tags=case["tags"],
                    weight=case["weight"],
                    scorer=case["scorer"],
                )
                for position, case in enumerate(normalized, start=1)
            )
            return version
    except IntegrityError:
        raise Conflict(
            f"another suite version of {suite} was created at the same moment; reload and "
            "try again."
        ) from None


def cases_of(version: SuiteVersion) -> list[dict[str, Any]]:
    """A suite version's cases in normalised form (evaluations.cases.case_for_file writes them)."""
    return [
        {
            "id": case.key,
            "messages": case.messages,
            "golden_answer": case.golden_answer,
            "criteria": case.criteria,
            "tags": case.tags,
            "weight": case.weight,
            "scorer": case.scorer,
        }
        for case in version.cases.order_by("position")
    ]


def start_run(
    *,
    version: AgentVersion,
    suite_version: SuiteVersion,
    actor: Actor,
    environment: Environment | None = None,
    recorded_answers: Mapping[str, str] | None = None,
    enqueue: bool = True,
) -> EvaluationRun:
    """Create a run of `version` on `suite_version` and queue it for the worker.

    With `recorded_answers` (answers by case id) the model is not asked; only cases that
    use the LLM judge then need an endpoint. `enqueue=False` leaves the run for the
    caller to execute inline (evaluations.runner.execute_run), as `evaluate --wait` does.
    """
    actor.require(RUN_PERMISSION, "run evaluations")
    agent = suite_version.suite.agent
    version.require_of(agent, note=", whose suite this is")
    run_settings = resolve_run_settings(environment)
    cases = list(suite_version.cases.order_by("position"))
    answers = None
    judged: list[str] = []
    if recorded_answers is None:
        require_base_url(run_settings, environment, f"Running {version.label} of {agent.slug}")
    else:
        answers = _check_recorded_answers(recorded_answers, cases)
        judged = [case.key for case in cases if case.scorer == Scorer.LLM_JUDGE]
        if judged and not run_settings.base_url:
            listing = ", ".join(judged[:5]) + (" …" if len(judged) > 5 else "")
            require_base_url(
                run_settings,
                environment,
                f"Scoring {len(judged)} llm_judge case(s) of {suite_version.label} ({listing})",
            )
    if answers is None or judged:
        # The worker checks again before calling; refusing here tells the person now.
        check_endpoint(
            base_url=run_settings.base_url,
            api_key_env=run_settings.api_key_env,
            where=run_settings.source,
        )

    with transaction.atomic():
        run = EvaluationRun.objects.create(
            agent=agent,
            version=version,
            suite_version=suite_version,
            environment=environment,
            answer_source=AnswerSource.MODEL if answers is None else AnswerSource.RECORDED,
            recorded_answers=answers,
            base_url=run_settings.base_url,
            api_key_env=run_settings.api_key_env if run_settings.base_url else "",
            judge_model=run_settings.judge_model,
            judge_prompt=run_settings.judge_prompt,
            judge_response_format=run_settings.judge_response_format,
            concurrency=run_settings.concurrency,
            timeout_seconds=run_settings.timeout_seconds,
            max_retries=run_settings.max_retries,
            cases_total=len(cases),
            created_by=actor.user,
            created_by_label=actor.label,
        )
        if enqueue:
            # Imported here: the task module imports the runner, which imports this module.
            from evaluations.tasks import run_evaluation

            result = run_evaluation.enqueue(str(run.pk))
            run.task_id = str(result.id)
            run.save(update_fields=["task_id"])
    return run


def cancel_run(*, run: EvaluationRun, actor: Actor) -> EvaluationRun:
    """Ask a run to stop: no new case starts; calls already running finish and are kept."""
    actor.require(CANCEL_PERMISSION, "cancel evaluation runs")
    with transaction.atomic():
        locked = EvaluationRun.objects.select_for_update().get(pk=run.pk)
        if locked.status in FINISHED_STATUSES:
            raise Conflict(f"the run is already {locked.get_status_display().lower()}.")
        if locked.cancel_requested_at is not None:
            raise Conflict(
                f"cancelling was already requested by {locked.cancelled_by_label} at "
                f"{locked.cancel_requested_at:%Y-%m-%d %H:%M:%S}."
            )
        now = timezone.now()
        locked.cancel_requested_at = now
        locked.cancelled_by_label = actor.label
        fields = ["cancel_requested_at", "cancelled_by_label"]
        if locked.status == RunStatus.QUEUED:
            # Nothing has started: the worker will find it finished and skip it.
            locked.status = RunStatus.CANCELLED
            locked.finished_at = now
            fields += ["status", "finished_at"]
        locked.save(update_fields=fields)
    return locked


def _check_recorded_answers(answers: Mapping[str, Any], cases: list[EvalCase]) -> dict[str, str]:
    if not isinstance(answers, Mapping):
        raise ValidationError({"answers": "must be a mapping of case id to answer text."})
    keys = [case.key for case in cases]
    problems = []
    missing = [key for key in keys if key not in answers]
    if missing:
        problems.append(f"no answer for the case(s) {', '.join(missing)}.")
    unknown = sorted(str(key) for key in answers if key not in keys)
    if unknown:
        problems.append(f"{', '.join(unknown)}: not case ids of this suite version.")
    not_text = sorted(str(key) for key, value in answers.items() if not isinstance(value, str))
    if not_text:
        problems.append(
            f"the answers of {', '.join(not_text)} are not text; put them in quotes (YAML "
            "reads yes, no, on, off and numbers as other types)."
        )
    if problems:
        raise ValidationError({"answers": problems})
    return {key: answers[key] for key in keys}
