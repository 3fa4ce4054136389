"""Canary services: start, change, advance, promote, abort, and the analysis that decides.

Invariants:
- One running canary per (agent, environment) (partial unique index; checked first
  for a clear message). The pointer holds it, so routing reads one row.
- Every change is written under the agent-row lock (deployments.services.releases.lock_pointer)
  with its release-log row, and invalidates the runtime cache after commit.
- The analysis acts through the same functions a person uses, as the system actor
  "canary analysis", and stores every evaluation (inputs, verdict, explanation).
"""

from __future__ import annotations

import datetime as dt
import itertools
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import TypeVar

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from agentconfig.core.actors import Actor
from agentconfig.core.bucketing import BUCKETS
from agentconfig.core.errors import Conflict, NotFound
from agentconfig.core.reasons import validate_reason
from agentconfig.core.safe_parse import InputError, check_number
from agentconfig.models import Agent
from deployments.approvals import clear_release
from deployments.canary_analysis import ArmCounts, Decision, Policy, StepState, Verdict, decide
from deployments.models import (
    CanaryDecision,
    CanaryPolicy,
    CanaryRollout,
    CanaryStatus,
    DeploymentRequest,
    Environment,
    OutcomeEventId,
    OutcomeLatency,
    Pointer,
    ReleaseKind,
    ReleaseLogEntry,
    RequestKind,
    Track,
)
from deployments.models.canary import OUTCOME_DEDUP_DAYS, POLICY_LIMITS
from deployments.selectors import get_canary_step_totals
from deployments.services.releases import (
    check_expected_active,
    end_canary,
    lock_pointer,
    write_release_log,
)
from versions.models import AgentVersion

MANAGE_PERMISSION = "deployments.manage_canary"
ANALYSIS_ACTOR = Actor.system("canary analysis")
_T = TypeVar("_T")


# --- percentages and steps -----------------------------------------------------------


def parse_percent(value: str | float, field: str = "percent") -> int:
    """A canary percentage (0 < p < 100, 0.01 % granularity) as basis points."""
    try:
        # A finite decimal number: float() would also take "nan", "inf" and "1_0".
        number = float(check_number(value, field=field))
    except InputError:
        raise ValidationError({field: f"{_shown(value)!r} is not a number."}) from None
    # The range first: round() of 1e308 * 100 would overflow.
    basis_points = round(number * 100) if 0 < number < 100 else 0
    if not (1 <= basis_points < BUCKETS):
        raise ValidationError(
            {field: f"must be more than 0 and less than 100 (0.01 % steps); got {_shown(value)}."}
        )
    if abs(number * 100 - basis_points) > 1e-6:
        raise ValidationError({field: f"has more than two decimals: {_shown(value)}."})
    return basis_points


def parse_steps(text: str | Sequence[str | float], field: str = "steps") -> list[int]:
    """Comma-separated, strictly increasing percentages, e.g. '1,5,25,50', as basis points."""
    parts = [p.strip() for p in text.split(",")] if isinstance(text, str) else list(text)
    if not parts or any(p == "" for p in parts):
        raise ValidationError({field: "give one or more percentages, e.g. 1,5,25,50."})
    steps = [parse_percent(p, field) for p in parts]
    if any(b <= a for a, b in itertools.pairwise(steps)):
        raise ValidationError({field: f"must increase step by step; got {text}."})
    return steps


def _shown(value: object) -> object:
    return value[:40] + "…" if isinstance(value, str) and len(value) > 40 else value


def get_policy(environment: Environment) -> CanaryPolicy:
    """The environment's canary policy (the documented defaults if none was saved)."""
    return CanaryPolicy.objects.filter(environment=environment).first() or CanaryPolicy(
        environment=environment
    )


# --- services -----------------------------------------------------------------------------


def start_canary(
    *,
    agent: Agent,
    environment: Environment,
    version: AgentVersion,
    actor: Actor,
    reason: str,
    percent: str | float | None = None,
    steps: str | Sequence[str | float] | None = None,
    bake_minutes: int | None = None,
    now: dt.datetime | None = None,
    request: DeploymentRequest | None = None,
    break_glass: str = "",
    expected_active_id: str | None = None,
) -> CanaryRollout:
    """Route a share of users to `version`: a fixed percentage, or steps ending in promotion.

    `now` is for replays and simulations; it defaults to the current time.
    """
    actor.require(MANAGE_PERMISSION, "start canaries")
    reason = validate_reason(reason)
    if percent is not None and steps is not None:
        raise ValidationError("give either a percentage or steps, not both.")
    policy = get_policy(environment)
    if percent is not None:
        plan = [parse_percent(percent)]
    else:
        plan = parse_steps(steps if steps is not None else policy.default_steps)
    bake = policy.bake_minutes if bake_minutes is None else bake_minutes
    try:
        # The policy's limit: a step's end (start + bake) must stay a date.
        low, high = POLICY_LIMITS["bake_minutes"]
        bake_seconds = 60 * int(
            check_number(bake, field="bake_minutes", minimum=low, maximum=high, integer=True)
        )
    except InputError as exc:
        raise ValidationError({"bake_minutes": f"{exc.message}."}) from None
    version.require_of(agent)

    with transaction.atomic():
        pointer = lock_pointer(agent, environment)
        check_expected_active(pointer, environment, expected_active_id)
        if pointer is None:
            raise Conflict(
                f"{agent.slug} has no stable version in {environment.slug} yet; deploy one "
                "first — a canary is measured against it."
            )
        if pointer.canary_id is not None:
            running = pointer.canary
            assert running is not None  # noqa: S101 - canary_id is set
            raise Conflict(
                f"a canary of {running.canary_version.label} is already running in "
                f"{environment.slug} (at {running.percent:g} %); change it with --percent, "
                "--advance, --promote or --abort."
            )
        if pointer.stable_version_id == version.pk:
            raise Conflict(f"{version.label} is already the stable version in {environment.slug}.")
        clearance = clear_release(
            environment=environment,
            version=version,
            kind=RequestKind.CANARY,
            actor=actor,
            active_version_id=pointer.stable_version_id,
            request=request,
            break_glass=break_glass,
        )
        now = now or timezone.now()
        try:
            with transaction.atomic():
                rollout = CanaryRollout.objects.create(
                    agent=agent,
                    environment=environment,
                    stable_version=pointer.stable_version,
                    canary_version=version,
                    steps=[[bp, bake_seconds] for bp in plan],
                    basis_points=plan[0],
                    started_at=now,
                    step_started_at=now,
                    started_by_label=actor.label,
                )
        except IntegrityError:
            raise Conflict(
                f"a canary of {agent.slug} is already running in {environment.slug}."
            ) from None
        pointer.canary = rollout
        pointer.updated_by_label = actor.label
        pointer.save()
        write_release_log(
            pointer,
            ReleaseKind.CANARY_START,
            pointer.stable_version,
            version,
            actor,
            reason,
            {"steps": [bp / 100 for bp in plan], "bake_seconds": bake_seconds, **clearance},
            request=request,
            rollout=rollout,
        )
    return rollout


def set_canary_percent(
    *,
    agent: Agent,
    environment: Environment,
    percent: str | float,
    actor: Actor,
    reason: str,
    expected_step: tuple[int, int] | None = None,
) -> CanaryRollout:
    """Change the running canary's percentage; same salt, so users stay in as it grows.

    `expected_step` is the (step index, basis points) the person confirmed the change
    against; if the canary moved meanwhile, nothing is written (Conflict).
    """
    actor.require(MANAGE_PERMISSION, "change canaries")
    reason = validate_reason(reason)
    basis_points = parse_percent(percent)
    with transaction.atomic():
        pointer, rollout = _lock_running(agent, environment, expected_step)
        if basis_points == rollout.basis_points:
            raise Conflict(f"the canary already runs at {rollout.percent:g} %.")
        rollout.steps = steps_after_percent_change(rollout, basis_points)
        return _move_to(pointer, rollout, rollout.step_index, actor, reason)


def steps_after_percent_change(rollout: CanaryRollout, basis_points: int) -> list[list[int]]:
    """The rollout's steps once its current step runs at `basis_points`.

    Done and current steps stay; later steps that would not grow the share are dropped.
    """
    index = rollout.step_index
    bake = rollout.steps[index][1]
    later = [step for step in rollout.steps[index + 1 :] if step[0] > basis_points]
    return [*rollout.steps[:index], [basis_points, bake], *later]


def advance_canary(
    *,
    agent: Agent,
    environment: Environment,
    actor: Actor,
    reason: str,
    expected_step: tuple[int, int] | None = None,
) -> CanaryRollout:
    """Move the running canary to its next step (from `expected_step`, if given)."""
    return _on_running(agent, environment, actor, reason, "advance", expected_step, _advance)


def promote_canary(
    *,
    agent: Agent,
    environment: Environment,
    actor: Actor,
    reason: str,
    expected_step: tuple[int, int] | None = None,
) -> ReleaseLogEntry:
    """Make the canary version the stable version now and end the canary (if it is still
    at `expected_step`, when given)."""
    return _on_running(agent, environment, actor, reason, "promote", expected_step, _promote)


def abort_canary(
    *, agent: Agent, environment: Environment, actor: Actor, reason: str
) -> ReleaseLogEntry:
    """End the canary; every user gets the stable version again."""

    def abort(pointer: Pointer, _: CanaryRollout, actor: Actor, reason: str) -> ReleaseLogEntry:
        return end_canary(pointer, CanaryStatus.ABORTED, actor, reason)

    return _on_running(agent, environment, actor, reason, "abort", None, abort)


def evaluate_canary(
    rollout: CanaryRollout, *, now: dt.datetime | None = None
) -> CanaryDecision | None:
    """Judge the rollout's current step and act on the verdict; None if it is not running."""
    now = now or timezone.now()
    with transaction.atomic():
        pointer = lock_pointer(rollout.agent, rollout.environment)
        if pointer is None or pointer.canary_id != rollout.pk:
            return None  # ended (or replaced) since it was listed
        locked = pointer.canary
        assert locked is not None  # noqa: S101 - pointer.canary_id == rollout.pk
        rollout = locked
        decision = analyse(rollout, now=now)
        record = CanaryDecision.objects.create(
            rollout=rollout,
            verdict=decision.verdict,
            explanation=decision.explanation,
            inputs=decision.inputs,
            step_index=rollout.step_index,
            basis_points=rollout.basis_points,
            created_at=now,
        )
        # Recorded on the rollout: ended by the maximum duration, not by evidence.
        rollout.ended_by_deadline = decision.ended_by_deadline
        if decision.verdict == Verdict.ROLLBACK:
            end_canary(pointer, CanaryStatus.ROLLED_BACK, ANALYSIS_ACTOR, decision.explanation)
        elif decision.verdict == Verdict.ADVANCE:
            _advance(pointer, rollout, ANALYSIS_ACTOR, decision.explanation, now=now)
        elif decision.verdict == Verdict.PROMOTE:
            _promote(pointer, rollout, ANALYSIS_ACTOR, decision.explanation, now=now)
    return record


def evaluate_running_canaries(*, now: dt.datetime | None = None) -> list[CanaryDecision]:
    """Evaluate every running canary once (what `canary_watch` does each interval)."""
    decisions = []
    running = CanaryRollout.objects.filter(status=CanaryStatus.RUNNING).select_related(
        "agent", "environment"
    )
    for rollout in running:
        decision = evaluate_canary(rollout, now=now)
        if decision is not None:
            decisions.append(decision)
    return decisions


def prune_outcome_event_ids(*, now: dt.datetime | None = None) -> int:
    """Forget event ids older than the deduplication window; returns how many."""
    cutoff = (now or timezone.now()) - dt.timedelta(days=OUTCOME_DEDUP_DAYS)
    deleted, _ = OutcomeEventId.objects.filter(received_at__lt=cutoff).delete()
    return deleted


# Latency histograms are read only for a running canary's current step, which started
# less than the longest maximum duration a policy may set; a day more for clock skew.
LATENCY_RETENTION = dt.timedelta(minutes=POLICY_LIMITS["max_duration_minutes"][1] + 1440)


def prune_outcome_latencies(*, now: dt.datetime | None = None) -> int:
    """Drop latency bins no canary can read any more (LATENCY_RETENTION); returns how many.

    They are the one outcome table that grows by dozens of rows per minute and arm."""
    cutoff = (now or timezone.now()) - LATENCY_RETENTION
    deleted, _ = OutcomeLatency.objects.filter(bucket_start__lt=cutoff).delete()
    return deleted


def analyse(rollout: CanaryRollout, *, now: dt.datetime) -> Decision:
    """The verdict on the rollout's current step, from the outcomes reported in it."""
    # The same totals the admin panel shows: one place decides what "this step" counts.
    return judge(
        rollout, get_policy(rollout.environment), get_canary_step_totals([rollout]), now=now
    )


def judge(
    rollout: CanaryRollout,
    policy: CanaryPolicy,
    totals: Mapping[tuple[uuid.UUID, str], ArmCounts],
    *,
    now: dt.datetime,
) -> Decision:
    """The verdict on the rollout's step from totals already read (get_canary_step_totals):
    what canary_watch decides and what the agent page shows."""
    return decide(
        totals.get((rollout.pk, Track.STABLE), ArmCounts()),
        totals.get((rollout.pk, Track.CANARY), ArmCounts()),
        analysis_policy(policy),
        step_state(rollout, now=now),
    )


def deadline_of(rollout: CanaryRollout, policy: CanaryPolicy) -> dt.datetime:
    """When the policy's maximum duration ends the rollout if nothing decides it first."""
    return rollout.started_at + dt.timedelta(minutes=policy.max_duration_minutes)


def canary_status(
    agent: Agent, environment: Environment, *, now: dt.datetime | None = None
) -> tuple[CanaryRollout, Decision, dt.datetime] | None:
    """The running canary, what the analysis would decide now and its deadline; None if
    no canary runs (what `canary --status` prints)."""
    rollout = (
        CanaryRollout.objects.select_related("canary_version", "stable_version", "environment")
        .filter(agent=agent, environment=environment, status=CanaryStatus.RUNNING)
        .first()
    )
    if rollout is None:
        return None
    return (
        rollout,
        analyse(rollout, now=now or timezone.now()),
        deadline_of(rollout, get_policy(environment)),
    )


def analysis_policy(policy: CanaryPolicy) -> Policy:
    """The saved policy as the pure analysis reads it."""
    return Policy(
        margin=policy.margin,
        max_error_increase=policy.max_error_increase,
        rollback_ratio=policy.rollback_ratio,
        min_regression=policy.min_regression,
        power=policy.power,
        promote_confidence=policy.promote_confidence,
        rollback_confidence=policy.rollback_confidence,
        max_latency_ratio=policy.max_latency_ratio,
        latency_quantile=policy.latency_quantile,
        max_score_drop=policy.max_score_drop,
        srm_tolerance=policy.srm_tolerance,
        max_duration_seconds=60 * policy.max_duration_minutes,
        deadline_action=policy.deadline_action,
    )


def step_state(rollout: CanaryRollout, *, now: dt.datetime) -> StepState:
    """Where the rollout stands at `now`: its step, the share a pass moves into, the time."""
    index = rollout.step_index
    following = rollout.steps[index + 1][0] / 100 if index + 1 < len(rollout.steps) else 100.0
    return StepState(
        index=index,
        count=len(rollout.steps),
        percent=rollout.percent,
        baked_seconds=max((now - rollout.step_started_at).total_seconds(), 0.0),
        bake_seconds=rollout.steps[index][1],
        next_percent=following,
        elapsed_seconds=max((now - rollout.started_at).total_seconds(), 0.0),
    )


# --- internals ----------------------------------------------------------------------------


def _on_running(
    agent: Agent,
    environment: Environment,
    actor: Actor,
    reason: str,
    verb: str,
    expected_step: tuple[int, int] | None,
    act: Callable[[Pointer, CanaryRollout, Actor, str], _T],
) -> _T:
    """`act` on the running canary, for a person who may manage canaries, with a reason,
    under the pointer's lock (and only if it is still at `expected_step`, when given)."""
    actor.require(MANAGE_PERMISSION, f"{verb} canaries")
    reason = validate_reason(reason)
    with transaction.atomic():
        pointer, rollout = _lock_running(agent, environment, expected_step)
        return act(pointer, rollout, actor, reason)


def _lock_running(
    agent: Agent, environment: Environment, expected_step: tuple[int, int] | None = None
) -> tuple[Pointer, CanaryRollout]:
    """Lock the agent's pointers; the pointer and its running canary.

    `expected_step` (step index, basis points) is what the person confirmed: it is
    compared here, under the lock the caller's write holds, so a step the analysis or a
    colleague took in between cannot be taken a second time in the person's name.
    """
    pointer = lock_pointer(agent, environment)
    if pointer is None or pointer.canary is None:
        raise NotFound(f"no canary of {agent.slug} is running in {environment.slug}.")
    rollout = pointer.canary
    if expected_step is not None and tuple(expected_step) != (
        rollout.step_index,
        rollout.basis_points,
    ):
        raise Conflict(
            f"the canary moved while you were reviewing: it is now at {rollout.percent:g} % "
            f"(step {rollout.step_index + 1} of {len(rollout.steps)}); check again."
        )
    return pointer, rollout


def _advance(
    pointer: Pointer,
    rollout: CanaryRollout,
    actor: Actor,
    reason: str,
    now: dt.datetime | None = None,
) -> CanaryRollout:
    if rollout.step_index + 1 >= len(rollout.steps):
        raise Conflict(
            f"the canary is at its last step ({rollout.percent:g} %); promote it or abort it."
        )
    return _move_to(pointer, rollout, rollout.step_index + 1, actor, reason, now)


def _move_to(
    pointer: Pointer,
    rollout: CanaryRollout,
    index: int,
    actor: Actor,
    reason: str,
    now: dt.datetime | None = None,
) -> CanaryRollout:
    before = rollout.percent
    rollout.step_index = index
    rollout.basis_points = rollout.steps[index][0]
    # A new step is judged on its own outcomes: its window starts now.
    rollout.step_started_at = now or timezone.now()
    rollout.save()
    write_release_log(
        pointer,
        ReleaseKind.CANARY_CHANGE,
        pointer.stable_version,
        rollout.canary_version,
        actor,
        reason,
        {"from_percent": before, "to_percent": rollout.percent},
        rollout=rollout,
    )
    return rollout


def _promote(
    pointer: Pointer,
    rollout: CanaryRollout,
    actor: Actor,
    reason: str,
    now: dt.datetime | None = None,
) -> ReleaseLogEntry:
    previous = pointer.stable_version
    rollout.status = CanaryStatus.PROMOTED
    rollout.ended_at = now or timezone.now()
    rollout.ended_by_label = actor.label
    rollout.end_reason = reason
    rollout.save()
    pointer.stable_version = rollout.canary_version
    pointer.canary = None
    pointer.updated_by_label = actor.label
    pointer.save()
    return write_release_log(
        pointer,
        ReleaseKind.PROMOTE,
        previous,
        rollout.canary_version,
        actor,
        reason,
        {"percent": rollout.percent},
        rollout=rollout,
    )
