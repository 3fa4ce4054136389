"""Executing a run: each case's answer from the model (or the recording), then its score.

Invariants:
- Model calls run in a thread pool of `run.concurrency` threads; the threads make HTTP
  calls only and never touch the database. This thread alone writes, one CaseResult per
  finished case, so SQLite's single writer is never contended by the run itself.
- At most `concurrency` cases are in flight; a new case starts only after one finishes
  and after the cancel flag was read. Cancelling therefore lets running calls finish
  (their results are kept) and starts nothing new.
- A failure inside one case (timeout, HTTP error, a judge reply that is not a judgement)
  is recorded as that case's error, with the raw judge reply; it never ends the run.
  What the server said is kept apart (CaseResult.error_detail), never in the error.
- Models are called only through agentconfig.core.outbound's safe_client, after the run's base
  URL and key variable were checked again (endpoint_for): a run whose stored settings
  break the outbound rules fails before any connection, and no key is read for it.
- Executing a run again resumes it: cases that already have a result are skipped.
- The run's score is written only when every case has a result: the weighted mean with
  errors counting as 0. A run whose every case failed ends as failed (no score), since it
  measured the endpoint, not the version.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction
from django.db.models import Sum
from django.utils import timezone

from agentconfig.core.outbound import safe_client
from evaluations.client import ChatClient, ChatError
from evaluations.endpoint import JUDGE_MAX_TOKENS, EndpointRefused, endpoint_for
from evaluations.models import (
    ENDPOINT_PURPOSE,
    FINISHED_STATUSES,
    CaseResult,
    EvalCase,
    EvaluationRun,
    RunStatus,
    Scorer,
)
from evaluations.scoring import (
    JudgeReplyError,
    judge_messages,
    judge_response_format,
    parse_judge_reply,
    score_deterministic,
    weighted_score,
)

logger = logging.getLogger(__name__)

# A chat completion is a few kilobytes; far more is not a model's reply.
MAX_RESPONSE_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class CasePlan:
    """What a worker thread needs for one case: plain data, no model instances."""

    case_id: int
    key: str
    messages: list[dict[str, str]]
    golden_answer: str
    criteria: str
    scorer: str
    recorded_answer: str | None


@dataclass(frozen=True)
class RunPlan:
    """The run's fixed inputs, shared by every case."""

    system_prompt: str
    model: str
    temperature: float
    max_tokens: int
    judge_model: str
    judge_prompt: str
    judge_response_format: dict[str, Any] | None


@dataclass
class CaseOutcome:
    answer: str = ""
    score: float | None = None
    rationale: str = ""
    error: str = ""
    error_detail: str = ""
    judge_reply: str = ""
    usage: dict[str, int | None] = field(default_factory=dict)


def execute_run(run_id: uuid.UUID | str) -> EvaluationRun:
    """Run every remaining case of the run, record each result, then score the run."""
    run = _claim(run_id)
    if run.is_finished:
        return run
    try:
        return _execute(run)
    except Exception as exc:
        # A bug or a lost database must not leave the run "running" forever.
        logger.exception("evaluation run %s failed", run.pk)
        try:
            _finish(run, RunStatus.FAILED, failure=f"the run stopped: {type(exc).__name__}: {exc}")
        except Exception:
            logger.exception("could not mark evaluation run %s as failed", run.pk)
        raise


def _claim(run_id: uuid.UUID | str) -> EvaluationRun:
    with transaction.atomic():
        run = EvaluationRun.objects.select_for_update().get(pk=run_id)
        if run.is_finished:
            return run
        if run.cancel_requested_at is not None:
            run.status, run.finished_at = RunStatus.CANCELLED, timezone.now()
            run.save(update_fields=["status", "finished_at"])
            return run
        run.status = RunStatus.RUNNING
        run.started_at = run.started_at or timezone.now()
        run.save(update_fields=["status", "started_at"])
    return run


def _execute(run: EvaluationRun) -> EvaluationRun:
    version = run.version
    plan = RunPlan(
        system_prompt=version.system_prompt,
        model=version.model,
        temperature=version.temperature,
        max_tokens=version.max_tokens,
        judge_model=run.judge_model,
        judge_prompt=run.judge_prompt,
        judge_response_format=judge_response_format(run.judge_response_format or "none"),
    )
    done = set(CaseResult.objects.filter(run=run).values_list("case_id", flat=True))
    recorded = run.recorded_answers or {}
    pending = [
        CasePlan(
            case_id=case.pk,
            key=case.key,
            messages=case.messages,
            golden_answer=case.golden_answer,
            criteria=case.criteria,
            scorer=case.scorer,
            recorded_answer=recorded.get(case.key) if run.recorded_answers is not None else None,
        )
        for case in EvalCase.objects.filter(suite_version=run.suite_version).order_by("position")
        if case.pk not in done
    ]
    needs_client = any(p.recorded_answer is None or p.scorer == Scorer.LLM_JUDGE for p in pending)
    client = None
    if needs_client:
        try:
            endpoint = endpoint_for(
                base_url=run.base_url,
                api_key_env=run.api_key_env,
                timeout_seconds=run.timeout_seconds,
                max_retries=run.max_retries,
                where=(
                    f"the evaluation policy of {run.environment.slug} (as the run recorded it)"
                    if run.environment is not None
                    else "the run's recorded settings"
                ),
            )
        except EndpointRefused as exc:
            return _finish(run, RunStatus.FAILED, failure=f"not started: {exc.message}")
        client = ChatClient(
            endpoint,
            http_client=safe_client(
                timeout=run.timeout_seconds,
                max_response_bytes=MAX_RESPONSE_BYTES,
                purpose=ENDPOINT_PURPOSE,
            ),
        )
    cancelled = False
    try:
        with ThreadPoolExecutor(
            max_workers=max(1, run.concurrency), thread_name_prefix=f"eval-{str(run.pk)[:8]}"
        ) as pool:
            cancelled = _drive(run, plan, pending, client, pool)
    finally:
        if client is not None:
            client.close()
    if cancelled:
        return _finish(run, RunStatus.CANCELLED)
    return _score(run)


def _drive(
    run: EvaluationRun,
    plan: RunPlan,
    pending: list[CasePlan],
    client: ChatClient | None,
    pool: ThreadPoolExecutor,
) -> bool:
    """Keep up to `concurrency` cases in flight; True if the run was cancelled."""
    queue: Iterator[CasePlan] = iter(pending)
    in_flight: dict[Future[CaseOutcome], CasePlan] = {}
    cancelled = _cancel_requested(run)
    while True:
        while not cancelled and len(in_flight) < max(1, run.concurrency):
            case = next(queue, None)
            if case is None:
                break
            in_flight[pool.submit(evaluate_case, plan, case, client)] = case
        if not in_flight:
            return cancelled
        finished, _ = wait(in_flight, return_when=FIRST_COMPLETED)
        for future in finished:
            _record(run, in_flight.pop(future), future.result())
        cancelled = cancelled or _cancel_requested(run)


def evaluate_case(plan: RunPlan, case: CasePlan, client: ChatClient | None) -> CaseOutcome:
    """One case, in a worker thread: the answer, then its score. Never raises."""
    outcome = CaseOutcome()
    try:
        if case.recorded_answer is not None:
            outcome.answer = case.recorded_answer
        else:
            assert client is not None  # noqa: S101 - _execute creates one when answers are asked
            try:
                reply = client.complete(
                    model=plan.model,
                    messages=[{"role": "system", "content": plan.system_prompt}, *case.messages],
                    temperature=plan.temperature,
                    max_tokens=plan.max_tokens,
                )
            except ChatError as exc:
                outcome.error, outcome.error_detail = f"model: {exc.message}", exc.detail
                outcome.usage["latency_ms"] = exc.latency_ms
                return outcome
            outcome.answer = reply.text
            outcome.usage.update(
                prompt_tokens=reply.prompt_tokens,
                completion_tokens=reply.completion_tokens,
                latency_ms=reply.latency_ms,
                attempts=reply.attempts,
            )
        if case.scorer != Scorer.LLM_JUDGE:
            score = score_deterministic(case.scorer, outcome.answer, case.golden_answer)
            outcome.score, outcome.rationale = score.value, score.rationale
            return outcome
        _judge(plan, case, client, outcome)
    except Exception as exc:  # a bug in scoring must cost one case, not the run
        logger.exception("evaluation case %s failed", case.key)
        outcome.error = f"internal error: {type(exc).__name__}: {exc}"
        outcome.score = None
    return outcome


def _judge(plan: RunPlan, case: CasePlan, client: ChatClient | None, outcome: CaseOutcome) -> None:
    assert client is not None  # noqa: S101 - _execute creates one when a case is judged
    try:
        reply = client.complete(
            model=plan.judge_model,
            messages=judge_messages(
                prompt=plan.judge_prompt,
                conversation=case.messages,
                golden_answer=case.golden_answer,
                criteria=case.criteria,
                answer=outcome.answer,
            ),
            temperature=0.0,
            max_tokens=JUDGE_MAX_TOKENS,
            response_format=plan.judge_response_format,
        )
    except ChatError as exc:
        hint = ""
        if exc.message.startswith("HTTP 400") and plan.judge_response_format is not None:
            hint = (
                " If this server does not support response_format, set "
                "EVAL_JUDGE_RESPONSE_FORMAT=none."
            )
        outcome.error, outcome.error_detail = f"judge: {exc.message}{hint}", exc.detail
        outcome.usage["judge_latency_ms"] = exc.latency_ms
        return
    outcome.judge_reply = reply.text
    outcome.usage.update(
        judge_prompt_tokens=reply.prompt_tokens,
        judge_completion_tokens=reply.completion_tokens,
        judge_latency_ms=reply.latency_ms,
    )
    try:
        judgement = parse_judge_reply(reply.text)
    except JudgeReplyError as exc:
        outcome.error = f"judge: {exc.message} (the raw reply is kept)"
        return
    outcome.score, outcome.rationale = judgement.value, judgement.rationale


def _record(run: EvaluationRun, case: CasePlan, outcome: CaseOutcome) -> None:
    CaseResult.objects.create(
        run=run,
        case_id=case.case_id,
        answer=outcome.answer,
        score=outcome.score if not outcome.error else None,
        rationale=outcome.rationale,
        error=outcome.error,
        error_detail=outcome.error_detail,
        judge_reply=outcome.judge_reply,
        **{key: value for key, value in outcome.usage.items() if value is not None},
    )


def _cancel_requested(run: EvaluationRun) -> bool:
    return EvaluationRun.objects.filter(pk=run.pk, cancel_requested_at__isnull=False).exists()


def _score(run: EvaluationRun) -> EvaluationRun:
    results = list(
        CaseResult.objects.filter(run=run)
        .select_related("case")
        .only("score", "error", "case__weight")
    )
    if len(results) < run.cases_total:
        return _finish(
            run,
            RunStatus.FAILED,
            failure=f"only {len(results)} of {run.cases_total} cases have a result.",
        )
    errors = [r for r in results if r.score is None]
    if results and len(errors) == len(results):
        return _finish(
            run,
            RunStatus.FAILED,
            failure=f"every case failed, so the run measured nothing; the first error: "
            f"{errors[0].error}",
        )
    score = weighted_score((r.case.weight, r.score) for r in results)
    return _finish(run, RunStatus.COMPLETED, score=score)


def _finish(
    run: EvaluationRun, status: RunStatus, *, score: float | None = None, failure: str = ""
) -> EvaluationRun:
    totals = CaseResult.objects.filter(run=run).aggregate(
        prompt_tokens=Sum("prompt_tokens"),
        completion_tokens=Sum("completion_tokens"),
        judge_prompt_tokens=Sum("judge_prompt_tokens"),
        judge_completion_tokens=Sum("judge_completion_tokens"),
    )
    with transaction.atomic():
        locked = EvaluationRun.objects.select_for_update().get(pk=run.pk)
        if locked.status in FINISHED_STATUSES:
            return locked
        for name, value in totals.items():
            setattr(locked, name, value or 0)
        locked.error_count = CaseResult.objects.filter(run=run, score__isnull=True).count()
        locked.status = status
        locked.score = score if status == RunStatus.COMPLETED else None
        locked.failure = failure
        locked.finished_at = timezone.now()
        locked.save()
    return locked
