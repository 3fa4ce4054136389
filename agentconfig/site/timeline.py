"""The audit timeline of one agent: every change to what its runtimes receive, or to the
rules that govern its releases.

Sources, newest first, each event saying who, when, why, what changed (before and after
where the record keeps it) and linking to a page that exists:
- versions created (not under an environment filter: creating one reaches no runtime);
- change requests and their reviews: releases of a version, and flag and settings
  changes (a request without an agent — a global flag, an environment's settings —
  concerns every agent);
- releases: deploys, rollbacks, break glass and every canary step, including those the
  canary analysis took (its decisions act through the release services, so each one is
  the release it made, with the analysis as actor and its explanation as the why);
- flags in the agent's scope (its own and global ones, deleted ones included): creation,
  variant values, deletion, and per-environment state (on/off, rules, variants served;
  kill switches marked);
- the agent's tool gates, added and removed;
- AuditRecords: environment settings, canary and evaluation policies, API keys of an
  environment (all concern every agent there) and people's roles (every agent);
- evaluation gate overrides for the agent's versions.

Events that apply to every environment (tool gates, flag definitions, roles) stay on an
environment's filtered timeline, marked "all environments".

Invariants:
- A selector across apps: it reads, never writes.
- A fixed number of queries whatever the number of events (one per source; a second for
  a history source only when its window was cut at `limit` rows), so the page's query
  count does not grow with the history.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from django.db.models import Exists, OuterRef, Q, QuerySet, Subquery
from django.db.models.fields.json import KeyTextTransform
from django.urls import reverse

from agentconfig.models import Agent, AuditAction, AuditRecord
from deployments.diff_context import compare_url_for
from deployments.models import (
    ApiKey,
    CanaryPolicy,
    DeploymentRequest,
    Environment,
    ReleaseKind,
    ReleaseLogEntry,
    RequestKind,
    RequestReview,
)
from evaluations.models import EvaluationPolicy, GateOverride
from flags.models import Flag, FlagEnvironment, ToolGate
from versions.models import AgentVersion

MAX_EVENTS = 500
ANALYSIS_ACTOR_LABEL = "canary analysis"  # deployments.services.canaries.ANALYSIS_ACTOR
KILL_SWITCH_PREFIX = "Kill switch:"  # flags.services.flags.kill_flag's reason
NOTHING = "—"


@dataclass(frozen=True)
class FieldChange:
    """One field of a change: its value before and after, as text ("—": none)."""

    name: str
    before: str
    after: str


@dataclass(frozen=True)
class AuditEvent:
    at: dt.datetime
    # version, request, review, release, flag, gate, settings, policy, api-key, roles, override
    kind: str
    actor: str
    title: str
    detail: str = ""  # why: the reason given
    environment: str | None = None
    link: str | None = None  # the diff, or the page of what changed
    # Why the event stands out ("Break glass", "Kill switch", …); "" for most.
    alert: str = ""
    changes: tuple[FieldChange, ...] = field(default=())
    # It applies in every environment (a tool gate, a flag's variants, a person's roles).
    all_environments: bool = False

    @property
    def prominent(self) -> bool:
        return bool(self.alert)


def list_audit_events(
    agent: Agent, *, environment: str | None = None, limit: int = MAX_EVENTS
) -> list[AuditEvent]:
    """The agent's timeline, newest first; `environment` keeps that environment's events
    and those that apply to every environment."""
    events: list[AuditEvent] = []
    if environment is None:
        events += _versions(agent, limit)
    events += _requests(agent, environment, limit)
    events += _releases(agent, environment, limit)
    events += _flags(agent, limit)
    events += _flag_states(agent, environment, limit)
    events += _tool_gates(agent, limit)
    events += _audit_records(environment, limit)
    events += _gate_overrides(agent, environment, limit)
    events.sort(key=lambda e: e.at, reverse=True)
    return events[:limit]


def compare_url(agent: Agent, old: AgentVersion | None, new: AgentVersion) -> str:
    """The diff page from `old` to `new`; the page of `new` when there was nothing before
    (a first deploy has nothing to compare with)."""
    if old is None:
        return version_url(new)
    return compare_url_for(agent, str(old.version_number), str(new.version_number))


def version_url(version: AgentVersion) -> str:
    return reverse("admin:versions_agentversion_change", args=[version.pk])


# --- versions, requests, releases ------------------------------------------------------


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
            # What its author changed: the diff from the version it was based on.
            link=compare_url_for(agent, "previous", str(v.version_number))
            if v.version_number > 1
            else version_url(v),
        )
        for v in rows
    ]


def _logged_event(row: Any, **fields: Any) -> AuditEvent:
    """The event of a row that records a change in one environment (a request, a release,
    a gate override): when it was written, where, and the reason it gives."""
    return AuditEvent(
        at=row.created_at, detail=row.reason, environment=row.environment.slug, **fields
    )


def _request_url(request_id: int) -> str:
    return reverse("admin:deployments_deploymentrequest_change", args=[request_id])


def _request_subject(request: DeploymentRequest) -> str:
    """What a request asks for, in words: a version, or its proposal's summary."""
    if request.version is not None:
        return request.version.label
    summary = request.proposal.get("summary") if isinstance(request.proposal, dict) else None
    return str(summary or request.get_kind_display().lower())


def _requests(agent: Agent, environment: str | None, limit: int) -> list[AuditEvent]:
    # A request without an agent (a global flag, an environment's settings) concerns all.
    mine = Q(agent=agent) | Q(agent__isnull=True)
    requests = DeploymentRequest.objects.filter(mine).select_related(
        "environment", "version", "base_version"
    )
    reviews = RequestReview.objects.filter(
        Q(request__agent=agent) | Q(request__agent__isnull=True)
    ).select_related("request__environment", "request__version", "reviewer")
    if environment:
        requests = requests.filter(environment__slug=environment)
        reviews = reviews.filter(request__environment__slug=environment)
    events = []
    for request in requests.order_by("-created_at")[:limit]:
        if request.version is not None:
            what = "a canary of" if request.kind == RequestKind.CANARY else "deploying"
            title = f"Requested {what} {request.version.label} (request #{request.pk})"
            link = compare_url(agent, request.base_version, request.version)
        else:
            kind = "settings" if request.kind == RequestKind.SETTINGS else "flag"
            title = (
                f"Requested a {kind} change: {_request_subject(request)} (request #{request.pk})"
            )
            link = _request_url(request.pk)
        events.append(
            _logged_event(
                request, kind="request", actor=request.requested_by_label, title=title, link=link
            )
        )
        if request.closed_at and request.status in ("withdrawn", "applied"):
            events.append(
                AuditEvent(
                    at=request.closed_at,
                    kind="request",
                    actor=request.closed_by_label,
                    title=f"Request #{request.pk} {request.status} ({_request_subject(request)})",
                    environment=request.environment.slug,
                    link=_request_url(request.pk),
                )
            )
    for review in reviews.order_by("-created_at")[:limit]:
        verb = "Approved" if review.decision == "approve" else "Rejected"
        events.append(
            AuditEvent(
                at=review.created_at,
                kind="review",
                actor=review.reviewer.get_username(),
                title=f"{verb} request #{review.request_id} ({_request_subject(review.request)})",
                detail=review.comment,
                environment=review.request.environment.slug,
                link=_request_url(review.request_id),
                alert="Rejected" if review.decision == "reject" else "",
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


def _percent(value: Any) -> str:
    return f"{value:g}" if isinstance(value, int | float) else "?"


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
            from_percent=_percent(details.get("from_percent")),
            to_percent=_percent(details.get("to_percent")),
        )
        by_analysis = entry.actor_label == ANALYSIS_ACTOR_LABEL
        if by_analysis:
            title = f"Canary analysis: {title[0].lower()}{title[1:]}"
        alert = ""
        if details.get("break_glass"):
            title = f"BREAK GLASS — {title}: {details['break_glass']}"
            alert = "Break glass"
        elif entry.request_id is not None:
            title = f"{title} — request #{entry.request_id}"
        if entry.kind == ReleaseKind.CANARY_ROLLBACK:
            alert = "Automatic rollback" if by_analysis else "Canary rolled back"
        if details.get("evaluation_override"):
            title = f"{title} (evaluation gate overridden)"
        events.append(
            _logged_event(
                entry,
                kind="release",
                actor=entry.actor_label,
                title=title,
                link=compare_url(agent, entry.from_version, entry.to_version),
                alert=alert,
            )
        )
    return events


# --- flags and tool gates (simple-history) ---------------------------------------------


def _in_scope_flags(agent: Agent) -> QuerySet[Any]:
    """History rows of the flags the agent's runtimes receive: its own and global ones,
    deleted ones included (a flag's scope never changes)."""
    return Flag.history.filter(Q(agent_id__isnull=True) | Q(agent_id=agent.pk))


def _flag_key() -> Subquery:
    """The key of the row's flag (from the flag's history, so deleted flags have one)."""
    return Subquery(
        Flag.history.filter(id=OuterRef("flag_id")).order_by("-history_id").values("key")[:1]
    )


def _previous_id(history: Any) -> Subquery:
    """The history id of the same object's previous row."""
    return Subquery(
        history.filter(id=OuterRef("id"), history_id__lt=OuterRef("history_id"))
        .order_by("-history_id")
        .values("history_id")[:1]
    )


def _with_previous(rows: list[Any], history: Any) -> dict[int, Any]:
    """Each row's previous row of the same object, by history id: from the window itself,
    and in one more query for those whose previous row fell outside it."""
    by_id = {row.history_id: row for row in rows}
    missing = [r.previous_id for r in rows if r.previous_id and r.previous_id not in by_id]
    if missing:
        by_id.update({row.history_id: row for row in history.filter(history_id__in=missing)})
    return {row.history_id: by_id[row.previous_id] for row in rows if row.previous_id in by_id}


def _history_window(
    rows: QuerySet[Any], history: Any, exists: Exists, limit: int
) -> tuple[list[Any], dict[int, Any]]:
    """The newest `limit` history rows (with who made them, and whether their object still
    exists), and each one's previous row of the same object (see _with_previous)."""
    window = list(
        rows.select_related("history_user")
        .annotate(previous_id=_previous_id(history), exists=exists)
        .order_by("-history_id")[:limit]
    )
    return window, _with_previous(window, history)


def _history_event(row: Any, *, detail: str | None = None, **fields: Any) -> AuditEvent:
    """The event of a history row: when and by whom it was written, and why."""
    why = (row.history_change_reason or "") if detail is None else detail
    return AuditEvent(at=row.history_date, actor=_actor(row), detail=why, **fields)


def _actor(row: Any) -> str:
    if row.updated_by_label:
        return str(row.updated_by_label)
    return row.history_user.get_username() if row.history_user else "system"


def _flag_link(flag_id: int, exists: bool) -> str:
    # A deleted flag has no page, but its history page stays (simple-history).
    name = "admin:flags_flag_change" if exists else "admin:flags_flag_history"
    return reverse(name, args=[flag_id])


def _flags(agent: Agent, limit: int) -> list[AuditEvent]:
    """A flag's creation, deletion, and changes of its variants' values (the values every
    environment serves). Description and owner reach no runtime: not shown."""
    rows, previous = _history_window(
        _in_scope_flags(agent), Flag.history, Exists(Flag.objects.filter(pk=OuterRef("id"))), limit
    )
    events = []
    for row in rows:
        scope = "global" if row.agent_id is None else f"scoped to {agent.slug}"
        before = previous.get(row.history_id)
        if row.history_type == "+":
            title = f"Created flag {row.key} ({row.kind}, {scope})"
            changes = _changes({}, {"variants": row.variants})
        elif row.history_type == "-":
            title = f"Deleted flag {row.key} ({scope})"
            changes = _changes({"variants": row.variants}, {})
        elif before is not None and before.variants != row.variants:
            title = f"Flag {row.key}: variant values changed"
            changes = _changes({"variants": before.variants}, {"variants": row.variants})
        else:
            continue
        events.append(
            _history_event(
                row,
                kind="flag",
                title=title,
                link=_flag_link(row.id, row.exists),
                changes=changes,
                all_environments=True,
            )
        )
    return events


def _flag_state_values(row: Any) -> dict[str, Any]:
    return {
        "state": "on" if row.enabled else "off",
        "rules": row.rules or [],
        "default variant": row.default_variant,
        "off variant": row.off_variant,
    }


def _flag_states(agent: Agent, environment: str | None, limit: int) -> list[AuditEvent]:
    """A flag's state in an environment: on/off (kill switches marked), rules, variants."""
    history = FlagEnvironment.history
    rows_query = (
        history.filter(flag_id__in=_in_scope_flags(agent).values("id"))
        .select_related("environment")
        .annotate(key=_flag_key())
    )
    if environment:
        rows_query = rows_query.filter(environment__slug=environment)
    rows, previous = _history_window(
        rows_query, history, Exists(Flag.objects.filter(pk=OuterRef("flag_id"))), limit
    )
    events = []
    for row in rows:
        reason = row.change_reason or row.history_change_reason or ""
        if row.history_type == "-":
            continue  # a state is deleted only with its flag, whose deletion is shown
        if row.history_type == "+" and not row.enabled and not row.rules and reason == "created":
            continue  # written with the flag, off: the flag's creation says it
        before_row = previous.get(row.history_id)
        after = _flag_state_values(row)
        before = _flag_state_values(before_row) if before_row is not None else {}
        changes = _changes(before, after)
        kill = reason.startswith(KILL_SWITCH_PREFIX)
        if kill:
            title = f"Kill switch: flag {row.key} turned off in {row.environment.slug}"
        else:
            title = f"Flag {row.key}: {after['state']}, {len(after['rules'])} rule(s)"
        events.append(
            _history_event(
                row,
                kind="flag",
                title=title,
                detail=reason,
                environment=row.environment.slug,
                link=_flag_link(row.flag_id, row.exists),
                alert="Kill switch" if kill else "",
                changes=changes,
            )
        )
    return events


def _tool_gates(agent: Agent, limit: int) -> list[AuditEvent]:
    """The agent's tool gates: a gated tool reaches only users for whom its flag is on."""
    history = ToolGate.history
    rows, previous = _history_window(
        history.filter(agent_id=agent.pk).annotate(key=_flag_key()),
        history,
        Exists(ToolGate.objects.filter(pk=OuterRef("id"))),
        limit,
    )
    events = []
    for row in rows:
        after = {"tool": row.tool_name, "flag": row.key}
        if row.history_type == "+":
            title = f"Gated the tool {row.tool_name} behind flag {row.key}"
            changes = _changes({}, after)
        elif row.history_type == "-":
            title = (
                f"Removed the gate of the tool {row.tool_name} (flag {row.key}): served to "
                "everyone whose version lists it"
            )
            changes = _changes(after, {})
        else:
            before_row = previous.get(row.history_id)
            before = {"tool": before_row.tool_name, "flag": before_row.key} if before_row else {}
            title = f"Changed the gate of the tool {row.tool_name}"
            changes = _changes(before, after)
        gate_page = "admin:flags_toolgate_change" if row.exists else "admin:flags_toolgate_history"
        events.append(
            _history_event(
                row,
                kind="gate",
                title=title,
                link=reverse(gate_page, args=[row.id]),
                changes=changes,
                all_environments=True,
            )
        )
    return events


# --- audit records and gate overrides ----------------------------------------------------

_RECORD_KINDS: dict[str, str] = {  # by AuditAction (a str enum)
    AuditAction.ENVIRONMENT_SETTINGS: "settings",
    AuditAction.CANARY_POLICY: "policy",
    AuditAction.EVALUATION_POLICY: "policy",
    AuditAction.API_KEY_CREATED: "api-key",
    AuditAction.API_KEY_REVOKED: "api-key",
    AuditAction.ROLES_CHANGED: "roles",
    AuditAction.USER_CREATED: "roles",
}


def _audit_records(environment: str | None, limit: int) -> list[AuditEvent]:
    """Governance changes: an environment's (every agent there) and people's (everyone)."""
    by_environment = OuterRef("environment_id")
    records = AuditRecord.objects.annotate(
        environment_slug=Subquery(Environment.objects.filter(pk=by_environment).values("slug")),
        canary_policy_id=Subquery(
            CanaryPolicy.objects.filter(environment_id=by_environment).values("pk")
        ),
        evaluation_policy_id=Subquery(
            EvaluationPolicy.objects.filter(environment_id=by_environment).values("pk")
        ),
        api_key_pk=Subquery(
            ApiKey.objects.filter(key_id=KeyTextTransform("key_id", OuterRef("after"))).values(
                "pk"
            )[:1]
        ),
    )
    if environment:
        records = records.filter(
            Q(environment_id__in=Environment.objects.filter(slug=environment).values("pk"))
            | Q(environment_id__isnull=True)
        )
    events = []
    for record in records.order_by("-created_at", "-id")[:limit]:
        events.append(
            AuditEvent(
                at=record.created_at,
                kind=_RECORD_KINDS.get(record.action, "settings"),
                actor=record.actor_label,
                title=_record_title(record),
                detail=record.reason,
                environment=record.environment_slug,
                link=_record_link(record),
                alert="Key revoked" if record.action == AuditAction.API_KEY_REVOKED else "",
                changes=_changes(record.before, record.after),
                all_environments=record.environment_id is None,
            )
        )
    return events


def _record_title(record: Any) -> str:
    label = record.subject_label
    action = record.action
    if action == AuditAction.ENVIRONMENT_SETTINGS:
        if not record.before:
            return f"Created the environment {label}"
        return f"Changed the settings of {label}"
    if action in (AuditAction.CANARY_POLICY, AuditAction.EVALUATION_POLICY):
        return f"{'Set' if not record.before else 'Changed'} the {label}"
    if action == AuditAction.API_KEY_CREATED:
        return f"Created API {label}"
    if action == AuditAction.API_KEY_REVOKED:
        return f"Revoked API {label}: its runtimes are refused"
    if action == AuditAction.ROLES_CHANGED:
        return f"Changed the roles of {label}"
    if action == AuditAction.USER_CREATED:
        return f"Created the user {label}"
    return f"{record.get_action_display().capitalize()}: {label}"


def _record_link(record: Any) -> str | None:
    action = record.action
    if action in (AuditAction.ROLES_CHANGED, AuditAction.USER_CREATED):
        if record.subject_user_id is None:
            return None
        return reverse("admin:auth_user_change", args=[record.subject_user_id])
    if action in (AuditAction.API_KEY_CREATED, AuditAction.API_KEY_REVOKED) and record.api_key_pk:
        return reverse("admin:deployments_apikey_change", args=[record.api_key_pk])
    if action == AuditAction.CANARY_POLICY and record.canary_policy_id:
        return reverse("admin:deployments_canarypolicy_change", args=[record.canary_policy_id])
    if action == AuditAction.EVALUATION_POLICY and record.evaluation_policy_id:
        return reverse(
            "admin:evaluations_evaluationpolicy_change", args=[record.evaluation_policy_id]
        )
    if record.environment_id is not None:
        return reverse("admin:deployments_environment_change", args=[record.environment_id])
    return None


def _gate_overrides(agent: Agent, environment: str | None, limit: int) -> list[AuditEvent]:
    """A reviewer let a version past a failing evaluation gate."""
    overrides = GateOverride.objects.filter(agent=agent).select_related("environment", "version")
    if environment:
        overrides = overrides.filter(environment__slug=environment)
    return [
        _logged_event(
            o,
            kind="override",
            actor=o.actor_label,
            title=f"Overrode the evaluation gate for {o.version.label} ({o.gate_status})",
            link=reverse("admin:evaluations_gateoverride_change", args=[o.pk]),
            alert="Gate overridden",
            changes=_changes({"gate": o.gate_status}, {"gate": "overridden"}),
        )
        for o in overrides.order_by("-created_at")[:limit]
    ]


# --- before and after ------------------------------------------------------------------------


def _changes(before: Mapping[str, Any], after: Mapping[str, Any]) -> tuple[FieldChange, ...]:
    """The fields whose values differ, in a stable order, as text."""
    before = before if isinstance(before, Mapping) else {}
    after = after if isinstance(after, Mapping) else {}
    names = _ordered([*before, *after])
    return tuple(
        FieldChange(name.replace("_", " "), _text(before.get(name)), _text(after.get(name)))
        for name in names
        if name not in before or name not in after or before[name] != after[name]
    )


def _ordered(names: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(names))


def _text(value: Any) -> str:
    if value is None or value == "":
        return NOTHING
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | dict):
        return json.dumps(value, sort_keys=True, ensure_ascii=False)
    return str(value)
