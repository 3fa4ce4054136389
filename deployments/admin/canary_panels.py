"""The running canaries an agent's admin page shows, one panel per environment.

What the analysis would decide now, each arm's outcomes, the recent decisions and the
error-rate chart (deployments.canary_chart); read-only, in a fixed number of queries.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from django.utils import timezone
from django.utils.safestring import SafeString, mark_safe

from deployments import canary_chart
from deployments.canary_analysis import ArmCounts, Decision
from deployments.models import (
    CanaryDecision,
    CanaryPolicy,
    CanaryRollout,
    Pointer,
    ReleaseLogEntry,
    Track,
)
from deployments.selectors import (
    get_canary_policies,
    get_canary_step_totals,
    list_canary_outcome_series,
    list_canary_step_changes,
    list_recent_canary_decisions,
)
from deployments.services import canaries as canary_services
from versions.models import AgentVersion

DECISIONS_SHOWN = 10
FINISHED_SHOWN = 5


@dataclass(frozen=True)
class StepRow:
    number: int
    percent: float
    bake_seconds: int
    current: bool = False
    done: bool = False

    @property
    def bake_minutes(self) -> int:
        return self.bake_seconds // 60


def step_rows(steps: Sequence[Sequence[int]], current: int = -1) -> list[StepRow]:
    """Steps as (basis points, bake seconds) for display, marking the current one
    (index `current`; -1: none has started) and those before it."""
    return [
        StepRow(
            number=index + 1,
            percent=bp / 100,
            bake_seconds=bake,
            current=index == current,
            done=index < current,
        )
        for index, (bp, bake) in enumerate(steps)
    ]


def rollout_steps(rollout: CanaryRollout) -> list[StepRow]:
    """The rollout's steps for display, marking the current one."""
    return step_rows(rollout.steps, rollout.step_index)


def at_last_step(rollout: CanaryRollout | None) -> bool:
    return rollout is not None and rollout.step_index + 1 >= len(rollout.steps)


@dataclass(frozen=True)
class ArmRow:
    """One arm's outcomes in the current step and since the canary started."""

    label: str
    version: AgentVersion
    step: ArmCounts
    total: ArmCounts

    @property
    def step_rate(self) -> str:
        return _rate_text(self.step)

    @property
    def total_rate(self) -> str:
        return _rate_text(self.total)


def _rate_text(counts: ArmCounts) -> str:
    return canary_chart.format_percent(counts.error_rate) if counts.n else "—"


@dataclass(frozen=True)
class DecisionRow:
    decision: CanaryDecision

    @property
    def step_number(self) -> int:
        return self.decision.step_index + 1

    @property
    def percent(self) -> float:
        return self.decision.basis_points / 100


@dataclass(frozen=True)
class CanaryPanel:
    """What the agent page shows about the running canary in one environment."""

    rollout: CanaryRollout
    stable: AgentVersion
    steps: list[StepRow]
    policy: CanaryPolicy
    arms: list[ArmRow]
    decisions: list[DecisionRow]
    chart: SafeString
    baked_seconds: float
    # The analysis of the step as it stands now (what canary_watch would decide).
    analysis: Decision

    @property
    def deadline(self) -> dt.datetime:
        return canary_services.deadline_of(self.rollout, self.policy)

    @property
    def step_number(self) -> int:
        return self.rollout.step_index + 1

    @property
    def bake_seconds(self) -> int:
        return self.rollout.steps[self.rollout.step_index][1]

    @property
    def baked_minutes(self) -> int:
        return int(self.baked_seconds // 60)

    @property
    def bake_minutes(self) -> int:
        return self.bake_seconds // 60

    @property
    def bake_done(self) -> bool:
        return self.baked_seconds >= self.bake_seconds

    @property
    def at_last_step(self) -> bool:
        return at_last_step(self.rollout)

    @property
    def has_step_data(self) -> bool:
        return any(arm.step.n for arm in self.arms)

    @property
    def has_data(self) -> bool:
        return any(arm.total.n for arm in self.arms)

    @property
    def more_decisions(self) -> bool:
        return len(self.decisions) >= DECISIONS_SHOWN


def build_canary_panels(pointers: Sequence[Pointer], *, now: dt.datetime) -> dict[int, CanaryPanel]:
    """The panel of each pointer with a running canary, by environment id, in a fixed number
    of queries whatever the number of environments and decisions.

    Each pointer must come with its environment, stable version and canary (with the
    canary's version) loaded.
    """
    running = [(p, p.canary) for p in pointers if p.canary is not None]
    if not running:
        return {}
    rollouts = [rollout for _, rollout in running]
    step_totals = get_canary_step_totals(rollouts)
    series = list_canary_outcome_series(rollouts, until=now)
    changes = list_canary_step_changes(rollouts)
    decisions = list_recent_canary_decisions(rollouts, limit=DECISIONS_SHOWN)
    policies = get_canary_policies([p.environment for p, _ in running])
    panels = {}
    for pointer, rollout in running:
        # The rollout's stable version is the pointer's while it runs (deploys are refused).
        stable = pointer.stable_version
        samples = series[rollout.pk]
        arms = [
            ArmRow(
                label=label,
                version=version,
                step=step_totals.get((rollout.pk, track), ArmCounts()),
                total=ArmCounts(
                    n=sum(s.n for s in samples if s.track == track),
                    errors=sum(s.errors for s in samples if s.track == track),
                ),
            )
            for label, version, track in (
                ("Stable", stable, Track.STABLE),
                ("Canary", rollout.canary_version, Track.CANARY),
            )
        ]
        policy = policies[pointer.environment_id]
        analysis = canary_services.judge(rollout, policy, step_totals, now=now)
        panels[pointer.environment_id] = CanaryPanel(
            rollout=rollout,
            stable=stable,
            steps=rollout_steps(rollout),
            policy=policy,
            arms=arms,
            decisions=[DecisionRow(d) for d in decisions[rollout.pk]],
            chart=_chart(pointer, rollout, stable, samples, changes[rollout.pk], now),
            baked_seconds=max((now - rollout.step_started_at).total_seconds(), 0.0),
            analysis=analysis,
        )
    return panels


def _chart(
    pointer: Pointer,
    rollout: CanaryRollout,
    stable: AgentVersion,
    samples: list[canary_chart.Sample],
    changes: list[ReleaseLogEntry],
    now: dt.datetime,
) -> SafeString:
    minutes = canary_chart.choose_bucket_minutes(now - rollout.started_at)
    local = [
        canary_chart.Sample(timezone.localtime(s.start), s.track, s.n, s.errors) for s in samples
    ]
    markers = [
        canary_chart.Marker(timezone.localtime(entry.created_at), f"→ {percent:g} %")
        for entry in changes
        if isinstance(percent := entry.details.get("to_percent"), int | float)
    ]
    svg = canary_chart.error_rate_svg(
        canary_chart.bucket_samples(local, minutes=minutes),
        start=timezone.localtime(rollout.started_at),
        end=timezone.localtime(now),
        title=(
            f"Error rate of {pointer.agent.slug} in {pointer.environment.name}: canary "
            f"{rollout.canary_version.label} and stable {stable.label}"
        ),
        description=(
            "Share of failed outcomes per arm since the canary started; dotted vertical "
            "lines mark changes of the canary's percentage."
        ),
        chart_id=f"canary-chart-{pointer.environment.slug}",
        markers=markers,
        time_zone=timezone.get_current_timezone_name(),
    )
    # canary_chart escapes every text it writes (tested with markup in names).
    return mark_safe(svg)  # noqa: S308
