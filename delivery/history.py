"""What was live at a moment in the past, rebuilt from the release log and histories.

Answers "what exactly did user U get from support-bot in production at 14:02 on
3 September?": the stable version then, the canary then (its salt and percentage),
and the flags and tool gates as they were, run through the same routing and flag
evaluation as the live endpoint.
"""

from __future__ import annotations

import datetime as dt

from django.db.models import QuerySet

from agentconfig.models import Agent
from delivery.runtime import CanaryRoute, Document, KeyEntry, error_document, variant_for
from deployments.models import STABLE_KINDS, CanaryRollout, ReleaseKind, ReleaseLogEntry
from flags.selectors import build_flag_snapshot_at


def build_document_at(key: KeyEntry, agent_slug: str, at: dt.datetime) -> Document:
    """The runtime document as it was at `at` (not cached: audits are rare)."""
    agent = Agent.objects.filter(slug=agent_slug).first()
    if agent is None:
        return error_document(404, "agent_not_found", f"there is no agent {agent_slug!r}.")
    log = ReleaseLogEntry.objects.filter(
        agent=agent, environment_id=key.environment_id, created_at__lte=at
    ).select_related("to_version")
    last_stable = log.filter(kind__in=STABLE_KINDS).first()
    if last_stable is None:
        return error_document(
            404,
            "not_deployed",
            f"agent {agent_slug!r} had no version deployed in {key.environment_slug!r} at "
            f"{at.isoformat()}.",
        )
    stable = variant_for(agent_slug, key.environment_slug, "stable", last_stable.to_version)
    canary = None
    rollout = (
        CanaryRollout.objects.filter(
            agent=agent, environment_id=key.environment_id, started_at__lte=at
        )
        .exclude(ended_at__lte=at)
        .select_related("canary_version")
        .first()
    )
    if rollout is not None:
        canary = CanaryRoute(
            salt=rollout.salt,
            basis_points=_basis_points_at(rollout, log),
            variant=variant_for(agent_slug, key.environment_slug, "canary", rollout.canary_version),
        )
    flags = build_flag_snapshot_at(key.environment_id, agent.pk, at)
    return Document(200, b"", stable, canary, flags)


def _basis_points_at(rollout: CanaryRollout, log: QuerySet[ReleaseLogEntry]) -> int:
    """The rollout's percentage at the time of `log` (its start or latest change by then)."""
    for entry in log.filter(
        kind__in=(ReleaseKind.CANARY_START, ReleaseKind.CANARY_CHANGE), rollout=rollout
    ):
        if entry.kind == ReleaseKind.CANARY_CHANGE:
            return round(entry.details["to_percent"] * 100)
        return round(entry.details["steps"][0] * 100)
    return rollout.basis_points
