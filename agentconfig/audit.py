"""The audit timeline of one agent: everything that changed what its users get.

Versions created, deployment requests and their reviews, releases (deploys, canary
steps, promotions, rollbacks, break glass), automatic canary decisions, and changes to
the flags in its scope — who, when, what and why, newest first. A selector across apps:
it reads, never writes.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.db.models import Q
from django.urls import reverse

from agentconfig.models import Agent
from deployments.models import (
    CanaryDecision,
    DeploymentRequest,
    ReleaseKind,
    ReleaseLogEntry,
    RequestReview,
)
from flags.models import Flag, FlagEnvironment
from versions.diff_context import compare_url_for
from versions.models import AgentVersion

MAX_EVENTS = 500


@dataclass(frozen=True)
class AuditEvent:
    at: dt.datetime
    kind: str  # version, request, review, release, canary-decision, flag
    actor: str
    title: str
    detail: str = ""
    environment: str | None = None
    link: str | None = None  # usually the diff of what changed
    prominent: bool = False  # break glass, automatic rollbacks


def list_audit_events(
    agent: Agent, *, environment: str | None = None, limit: int = MAX_EVENTS
) -> list[AuditEvent]:
    """The agent's timeline, newest first; `environment` keeps that environment's events."""
    events: list[AuditEvent] = []
    if environment is None:
        events += _versions(agent, limit)
    events += _requests(agent, environment, limit)
    events += _releases(agent, environment, limit)
    events += _decisions(agent, environment, limit)
    events += _flag_changes(agent, environment, limit)
    events.sort(key=lambda e: e.at, reverse=True)
    return events[:limit]


def compare_url(agent: Agent, old: AgentVersion | None, new: AgentVersion) -> str:
    """The diff page from `old` to `new` (or from the previous version when old is None)."""
    old_ref = str(old.version_number) if old else "previous"
    return compare_url_for(agent, old_ref, str(new.version_number))


def _versions(agent: Agent, limit: int) -> list[AuditEvent]:
    rows = agent.versions.only(
        "agent", "version_number", "created_at", "created_by_label", "change_description", "source"
    ).order_by("-version_number")[:limit]
    return [
        AuditEvent(
            at=v.created_at,
            kind="version",
            actor=v.created_by_label,
            title=f"Created {v.label} ({v.get_source_display().lower()})",
            detail=v.change_description,
            link=compare_url(agent, None, v) if v.version_number > 1 else None,
        )
        for v in rows
    ]


def _requests(agent: Agent, environment: str | None, limit: int) -> list[AuditEvent]:
    requests = DeploymentRequest.objects.filter(agent=agent).select_related(
        "environment", "version", "base_version"
    )
    reviews = RequestReview.objects.filter(request__agent=agent).select_related(
        "request__environment", "request__version", "reviewer"
    )
    if environment:
        requests = requests.filter(environment__slug=environment)
        reviews = reviews.filter(request__environment__slug=environment)
    events = []
    for request in requests.order_by("-created_at")[:limit]:
        what = "a canary of" if request.kind == "canary" else "deploying"
        events.append(
            AuditEvent(
                at=request.created_at,
                kind="request",
                actor=request.requested_by_label,
                title=f"Requested {what} {request.version.label} (request #{request.pk})",
                detail=request.reason,
                environment=request.environment.slug,
                link=compare_url(agent, request.base_version, request.version),
            )
        )
        if request.closed_at and request.status in ("withdrawn", "applied"):
            events.append(
                AuditEvent(
                    at=request.closed_at,
                    kind="request",
                    actor=request.closed_by_label,
                    title=f"Request #{request.pk} {request.status}",
                    environment=request.environment.slug,
                )
            )
    for review in reviews.order_by("-created_at")[:limit]:
        verb = "Approved" if review.decision == "approve" else "Rejected"
        events.append(
            AuditEvent(
                at=review.created_at,
                kind="review",
                actor=review.reviewer.get_username(),
                title=f"{verb} request #{review.request_id} ({review.request.version.label})",
                detail=review.comment,
                environment=review.request.environment.slug,
                prominent=review.decision == "reject",
            )
        )
    return events


_RELEASE_TITLES = {
    ReleaseKind.DEPLOY: "Deployed {to} (was {frm})",
    ReleaseKind.ROLLBACK: "Rolled back from {frm} to {to}",
    ReleaseKind.CANARY_START: "Started a canary of {to} against {frm}",
    ReleaseKind.CANARY_CHANGE: "Canary of {to}: {from_percent} % -> {to_percent} %",
    ReleaseKind.PROMOTE: "Promoted the canary {to} to stable (was {frm})",
    ReleaseKind.CANARY_ABORT: "Aborted the canary of {frm}",
    ReleaseKind.CANARY_ROLLBACK: "Rolled back the canary of {frm}",
}


def _releases(agent: Agent, environment: str | None, limit: int) -> list[AuditEvent]:
    entries = ReleaseLogEntry.objects.filter(agent=agent).select_related(
        "environment", "from_version", "to_version"
    )
    if environment:
        entries = entries.filter(environment__slug=environment)
    events = []
    for entry in entries[:limit]:
        details = entry.details or {}
        title = _RELEASE_TITLES[ReleaseKind(entry.kind)].format(
            to=entry.to_version.label,
            frm=entry.from_version.label if entry.from_version else "nothing",
            from_percent=f"{details.get('from_percent', '?'):g}"
            if isinstance(details.get("from_percent"), int | float)
            else "?",
            to_percent=f"{details.get('to_percent', '?'):g}"
            if isinstance(details.get("to_percent"), int | float)
            else "?",
        )
        if details.get("break_glass"):
            title = f"BREAK GLASS — {title}: {details['break_glass']}"
        elif details.get("request"):
            title = f"{title} — request #{details['request']}"
        events.append(
            AuditEvent(
                at=entry.created_at,
                kind="release",
                actor=entry.actor_label,
                title=title,
                detail=entry.reason,
                environment=entry.environment.slug,
                link=compare_url(agent, entry.from_version, entry.to_version)
                if entry.from_version
                else None,
                prominent=bool(details.get("break_glass"))
                or entry.kind == ReleaseKind.CANARY_ROLLBACK,
            )
        )
    return events


def _decisions(agent: Agent, environment: str | None, limit: int) -> list[AuditEvent]:
    # Holds are the normal state of a watched canary; the timeline shows the decisions.
    decisions = (
        CanaryDecision.objects.filter(rollout__agent=agent)
        .exclude(verdict="hold")
        .select_related("rollout__environment", "rollout__canary_version")
    )
    if environment:
        decisions = decisions.filter(rollout__environment__slug=environment)
    return [
        AuditEvent(
            at=d.created_at,
            kind="canary-decision",
            actor="canary analysis",
            title=f"Canary analysis: {d.verdict} ({d.rollout.canary_version.label})",
            detail=d.explanation,
            environment=d.rollout.environment.slug,
            prominent=d.verdict == "rollback",
        )
        for d in decisions[:limit]
    ]


def _flag_changes(agent: Agent, environment: str | None, limit: int) -> list[AuditEvent]:
    in_scope = Flag.objects.filter(Q(agent__isnull=True) | Q(agent=agent)).values_list("pk", "key")
    keys = dict(in_scope)
    history = FlagEnvironment.history.filter(flag_id__in=keys).select_related(
        "environment", "history_user"
    )
    if environment:
        history = history.filter(environment__slug=environment)
    events = []
    for row in history.order_by("-history_date")[:limit]:
        state = "on" if row.enabled else "off"
        events.append(
            AuditEvent(
                at=row.history_date,
                kind="flag",
                actor=row.updated_by_label
                or (row.history_user.get_username() if row.history_user else "system"),
                title=f"Flag {keys[row.flag_id]}: {state}, {len(row.rules or [])} rule(s)",
                detail=row.change_reason or row.history_change_reason or "",
                environment=row.environment.slug if row.environment_id else None,
                link=reverse("admin:flags_flag_change", args=[row.flag_id]),
                prominent="kill switch" in (row.change_reason or "").lower(),
            )
        )
    return events
