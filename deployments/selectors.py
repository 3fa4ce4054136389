"""Reads about environments, pointers and canaries that several entry points share."""

from __future__ import annotations

import datetime as dt
import functools
import operator
import uuid
from collections.abc import Mapping, Sequence
from typing import Any, cast

from django.db.models import F, Prefetch, Q, QuerySet, Sum, Window
from django.db.models.functions import RowNumber, TruncDay, TruncHour
from django.db.models.functions.datetime import TruncBase

from agentconfig.core.errors import NotFound
from agentconfig.core.people import made_grants_since
from agentconfig.models import Agent
from deployments import canary_chart
from deployments.canary_analysis import ArmCounts, step_window_start
from deployments.models import (
    STABLE_KINDS,
    CanaryDecision,
    CanaryPolicy,
    CanaryRollout,
    CanaryStatus,
    DeploymentRequest,
    Environment,
    OutcomeCount,
    OutcomeLatency,
    Pointer,
    ReleaseKind,
    ReleaseLogEntry,
    RequestReview,
    RequestStatus,
    Track,
)
from versions.models import AgentVersion
from versions.selectors import list_agents

# The columns an outcome total sums (what the canary analysis and the admin panel read).
ARM_FIELDS = (
    "n",
    "errors",
    "latency_count",
    "latency_sum",
    "latency_sumsq",
    "score_count",
    "score_sum",
    "score_sumsq",
)


def get_environment(slug: str) -> Environment:
    """The environment with `slug`, or NotFound naming the ones that exist."""
    try:
        return Environment.objects.get(slug=slug)
    except Environment.DoesNotExist:
        known = ", ".join(Environment.objects.values_list("slug", flat=True)) or "none"
        raise NotFound(f"there is no environment {slug!r} (known: {known}).") from None


def list_active_versions(
    agent_slug: str | None, environment_slug: str
) -> tuple[list[AgentVersion], list[str]]:
    """The version active in `environment_slug` of `agent_slug` (or of every agent), in
    slug order, and the agents not deployed there (for `export_agents --environment`)."""
    environment = get_environment(environment_slug)
    agents = list_agents(agent_slug)
    pointers = {
        pointer.agent_id: pointer.stable_version
        for pointer in Pointer.objects.filter(
            environment=environment, agent__in=agents
        ).select_related("stable_version__agent")
    }
    if agent_slug and not pointers:
        raise NotFound(f"{agent_slug} is not deployed to {environment.slug}; nothing to export.")
    skipped = [
        f"{agent.slug}: not deployed to {environment.slug}"
        for agent in agents
        if agent.pk not in pointers
    ]
    return [pointers[agent.pk] for agent in agents if agent.pk in pointers], skipped


def get_pointer(agent: Agent, environment: Environment) -> Pointer | None:
    """The agent's pointer in `environment`, with its version, or None if never deployed."""
    return (
        Pointer.objects.select_related("stable_version", "canary__canary_version")
        .filter(agent=agent, environment=environment)
        .first()
    )


def list_release_history(agent: Agent, environment: Environment) -> QuerySet[ReleaseLogEntry]:
    """The release log of one agent in one environment, newest first."""
    return ReleaseLogEntry.objects.filter(agent=agent, environment=environment).select_related(
        "from_version", "to_version", "actor"
    )


def list_rollback_targets(agent: Agent, environment: Environment) -> list[AgentVersion]:
    """Versions that were active in `environment` before, most recently active first.

    The first entry is the default rollback target (the version active just before the
    current one) when there is one.
    """
    pointer = get_pointer(agent, environment)
    if pointer is None:
        return []
    history = list(list_release_history(agent, environment).filter(kind__in=STABLE_KINDS))
    ordered: list[AgentVersion] = []
    seen = {pointer.stable_version_id}
    default = history[0].from_version if history else None
    if default is not None:
        ordered.append(default)
        seen.add(default.pk)
    for entry in history:
        if entry.to_version_id not in seen:
            ordered.append(entry.to_version)
            seen.add(entry.to_version_id)
    return ordered


def list_open_requests(
    agent: Agent, environment: Environment | None = None
) -> list[DeploymentRequest]:
    """The agent's open deployment requests (in one environment if given), oldest first.

    Each comes with its environment, its version (without prompt and guardrails) and its
    reviews, so deployments.approvals.valid_approvals costs no further query.
    """
    requests = DeploymentRequest.objects.filter(agent=agent, status=RequestStatus.OPEN)
    if environment is not None:
        requests = requests.filter(environment=environment)
    return list(
        requests.select_related("environment", "version")
        .defer(*_version_text("version"))
        .annotate(
            requester_made_grants=made_grants_since(granter="requested_by", since="created_at")
        )
        .prefetch_related(
            Prefetch("reviews", queryset=RequestReview.objects.order_by("created_at", "id"))
        )
        .order_by("environment__position", "created_at")
    )


# --- canaries: what the agent page's canary panels show ---------------------------------
# Each function answers for every given rollout in one query (the series in at most one
# query per time granularity), so a page with a canary in every environment costs the
# same number of queries as a page with one.

_TRUNCATIONS: dict[str, type[TruncBase]] = {"hour": TruncHour, "day": TruncDay}


def _since_minute(moment: dt.datetime) -> dt.datetime:
    # The chart shows a rollout from the minute it started in; a step's totals start at
    # its first full minute instead (canary_analysis.step_window_start).
    return moment.replace(second=0, microsecond=0)


def _arms_of(rollout: CanaryRollout, since_minute: dt.datetime) -> Q:
    return Q(environment_id=rollout.environment_id, bucket_start__gte=since_minute) & (
        Q(version_id=rollout.stable_version_id, track=Track.STABLE)
        | Q(version_id=rollout.canary_version_id, track=Track.CANARY)
    )


def _any_of(conditions: Sequence[Q]) -> Q:
    return functools.reduce(operator.or_, conditions)


def get_canary_step_totals(
    rollouts: Sequence[CanaryRollout],
) -> dict[tuple[uuid.UUID, str], ArmCounts]:
    """Outcomes per (rollout, track) in each rollout's current step: what the analysis sees.

    Two queries for any number of rollouts: the counts, and the latency histograms.
    """
    if not rollouts:
        return {}
    by_environment = {r.environment_id: r for r in rollouts}
    # Each minute counts in one step only: a step's first minute is its first full one.
    window = _any_of([_arms_of(r, step_window_start(r.step_started_at)) for r in rollouts])
    rows = (
        OutcomeCount.objects.filter(agent_id=rollouts[0].agent_id)
        .filter(window)
        .values("environment_id", "track")
        .annotate(**{name: Sum(name) for name in ARM_FIELDS})
        .order_by()
    )
    histograms: dict[tuple[uuid.UUID, str], dict[int, int]] = {}
    bins = (
        OutcomeLatency.objects.filter(agent_id=rollouts[0].agent_id)
        .filter(window)
        .values("environment_id", "track", "bin")
        .annotate(total=Sum("count"))
        .order_by()
    )
    for bin_row in bins:
        key = (by_environment[bin_row["environment_id"]].pk, bin_row["track"])
        histograms.setdefault(key, {})[bin_row["bin"]] = bin_row["total"]
    totals = {}
    for row in rows:
        key = (by_environment[row["environment_id"]].pk, row["track"])
        sums: Mapping[str, Any] = row  # the arm sums are annotated by name: not in the row type
        totals[key] = ArmCounts(
            **{name: sums[name] or 0 for name in ARM_FIELDS},
            latency_histogram=histograms.get(key, {}),
        )
    return totals


def list_canary_outcome_series(
    rollouts: Sequence[CanaryRollout], *, until: dt.datetime
) -> dict[uuid.UUID, list[canary_chart.Sample]]:
    """Outcome counts per rollout since it started, summed per minute, hour or day.

    The granularity follows the bucket width canary_chart will use for the rollout's
    length, so a week-long rollout reads a few hundred rows, not ten thousand.
    """
    series: dict[uuid.UUID, list[canary_chart.Sample]] = {r.pk: [] for r in rollouts}
    groups: dict[str, list[CanaryRollout]] = {}
    for rollout in rollouts:
        minutes = canary_chart.choose_bucket_minutes(until - rollout.started_at)
        granularity = "day" if minutes % 1440 == 0 else "hour" if minutes % 60 == 0 else "minute"
        groups.setdefault(granularity, []).append(rollout)
    for granularity, members in groups.items():
        by_environment = {r.environment_id: r for r in members}
        queryset = OutcomeCount.objects.filter(agent_id=members[0].agent_id).filter(
            _any_of([_arms_of(r, _since_minute(r.started_at)) for r in members])
        )
        truncation = _TRUNCATIONS.get(granularity)
        period = truncation("bucket_start") if truncation else F("bucket_start")
        rows = (
            queryset.annotate(period=period)
            .values("environment_id", "track", "period")
            .annotate(n=Sum("n"), errors=Sum("errors"))
            .order_by("period")
        )
        for row in rows:
            rollout = by_environment[row["environment_id"]]
            series[rollout.pk].append(
                canary_chart.Sample(row["period"], row["track"], row["n"], row["errors"])
            )
    return series


def list_canary_step_changes(
    rollouts: Sequence[CanaryRollout],
) -> dict[uuid.UUID, list[ReleaseLogEntry]]:
    """Each rollout's percentage changes (release-log rows of kind canary_change), oldest first."""
    if not rollouts:
        return {}
    changes: dict[uuid.UUID, list[ReleaseLogEntry]] = {r.pk: [] for r in rollouts}
    entries = ReleaseLogEntry.objects.filter(
        agent_id=rollouts[0].agent_id,
        kind=ReleaseKind.CANARY_CHANGE,
        rollout__in=rollouts,
    ).order_by("id")
    for entry in entries.only("id", "created_at", "details", "rollout_id"):
        changes[cast(uuid.UUID, entry.rollout_id)].append(entry)  # never None: filtered
    return changes


def list_recent_canary_decisions(
    rollouts: Sequence[CanaryRollout], *, limit: int
) -> dict[uuid.UUID, list[CanaryDecision]]:
    """The newest `limit` decisions of each rollout, newest first."""
    decisions: dict[uuid.UUID, list[CanaryDecision]] = {r.pk: [] for r in rollouts}
    if not rollouts:
        return decisions
    ranked = (
        CanaryDecision.objects.filter(rollout__in=[r.pk for r in rollouts])
        .annotate(rank=Window(RowNumber(), partition_by=[F("rollout_id")], order_by=F("id").desc()))
        .filter(rank__lte=limit)
        .defer("inputs")
        .order_by("-id")
    )
    for decision in ranked:
        decisions[decision.rollout_id].append(decision)
    return decisions


def list_finished_canaries(agent: Agent, *, limit: int) -> list[CanaryRollout]:
    """The agent's most recently started canaries that have ended, in any environment."""
    return list(
        CanaryRollout.objects.filter(agent=agent)
        .exclude(status=CanaryStatus.RUNNING)
        .select_related("environment", "canary_version", "stable_version")
        .defer(*_version_text("canary_version", "stable_version"))
        .order_by("-started_at")[:limit]
    )


def get_canary_policies(environments: Sequence[Environment]) -> dict[int, CanaryPolicy]:
    """The saved canary policy of each environment; the defaults where none was saved."""
    saved = {p.environment_id: p for p in CanaryPolicy.objects.filter(environment__in=environments)}
    return {e.pk: saved.get(e.pk) or CanaryPolicy(environment=e) for e in environments}


def _version_text(*relations: str) -> list[str]:
    return [f"{r}__{column}" for r in relations for column in ("system_prompt", "guardrails")]
