"""Admin for environments, pointers and the release log (deployments.models.core).

Invariants:
- Pointers and release-log rows are never written here: pointers move only through the
  Deploy… and Roll back… pages of an agent (deployments.admin.release_pages), which call
  deployments.services.releases.
- Environments are saved only by deployments.services.environments, with a reason
  (deployments.admin.governed: refusals stay on the form), and never deleted. A lower
  number of required approvals opens a settings request instead of being saved.
"""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.contrib import admin
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from agentconfig.core.actors import Actor
from agentconfig.core.admin_pages import HistoryAdmin, ReadOnlyAdminMixin, text_column
from deployments.admin.governed import GovernedAdmin, not_applied
from deployments.forms import EnvironmentForm
from deployments.models import Environment, Pointer, ReleaseKind, ReleaseLogEntry, RequestKind
from deployments.services import environments as environment_services
from deployments.services.requests import propose_change
from versions.admin_links import version_link, without_version_text


def json_block(value: Any) -> SafeString:
    """A JSON value as the admin shows stored data: indented, keys sorted, escaped."""
    return format_html(
        '<pre class="ac-text">{}</pre>',
        json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False),
    )


def percent_text(value: Any) -> str:
    """A percentage as the admin shows it ("5 %"); "?" for what is not a number."""
    return f"{value:g} %" if isinstance(value, int | float) else "?"


def describe_release_details(entry: ReleaseLogEntry) -> str:
    """A release-log row's details in words: the canary's steps or percentage change."""
    details = entry.details if isinstance(entry.details, dict) else {}
    if not details:
        return ""
    if entry.kind == ReleaseKind.CANARY_START:
        steps = details.get("steps")
        ramp = " → ".join(percent_text(s) for s in steps) if isinstance(steps, list) else "?"
        bake = details.get("bake_seconds")
        minutes = f", ≥ {bake // 60} min each" if isinstance(bake, int) else ""
        return f"{ramp}{minutes}"
    if entry.kind == ReleaseKind.CANARY_CHANGE:
        was, now = details.get("from_percent"), details.get("to_percent")
        return f"{percent_text(was)} → {percent_text(now)}"
    if "percent" in details:
        return f"at {percent_text(details.get('percent'))}"
    return json.dumps(details, sort_keys=True, ensure_ascii=False)


def _approvals(count: int) -> str:
    return "1 approval" if count == 1 else f"{count} approvals"


def _related_links(entry: ReleaseLogEntry) -> SafeString | str:
    """Links to the request this release applied and the rollout it belongs to."""
    links = []
    if entry.request_id is not None:
        url = reverse("admin:deployments_deploymentrequest_change", args=[entry.request_id])
        links.append(format_html('<a href="{}">request #{}</a>', url, entry.request_id))
    if entry.rollout_id is not None:
        url = reverse("admin:deployments_canaryrollout_change", args=[entry.rollout_id])
        links.append(format_html('<a href="{}">rollout</a>', url))
    return format_html_join(" · ", "{}", ((link,) for link in links))


@admin.register(Environment)
class EnvironmentAdmin(GovernedAdmin):
    form = EnvironmentForm
    list_display = ("slug", "name", "position", "required_approvals", "created_at")
    list_display_links = ("slug", "name")
    search_fields = ("slug", "name")
    fields = (
        "slug",
        "name",
        "position",
        "required_approvals",
        "reason",
        "expected_state",
        "created_at",
    )

    def get_readonly_fields(
        self, request: HttpRequest, obj: Environment | None = None
    ) -> tuple[str, ...]:
        # API requests, CLI scripts and pipelines name environments by slug.
        return ("slug", "created_at") if obj is not None else ("created_at",)

    def save_via_service(
        self, request: HttpRequest, form: forms.ModelForm, change: bool
    ) -> Environment:
        data = form.cleaned_data
        actor = Actor.of(request.user)
        if not change:
            return environment_services.create_environment(
                slug=data["slug"],
                name=data["name"],
                position=data["position"],
                required_approvals=data["required_approvals"],
                actor=actor,
                reason=data["reason"],
            )
        wanted = data["required_approvals"]
        with transaction.atomic():
            # Held until the page's transaction ends: "lowering?" is decided on the real value.
            current = environment_services.lock_environment(form.instance)
            lowering = wanted < current.required_approvals
            environment = environment_services.update_environment(
                environment=current,
                actor=actor,
                reason=data["reason"],
                name=data["name"],
                position=data["position"],
                required_approvals=None if lowering else wanted,
                expected_state=data["expected_state"] or None,
            )
            if lowering:
                # Never lowered directly: another administrator approves it first.
                change_request = propose_change(
                    kind=RequestKind.SETTINGS,
                    environment=environment,
                    proposal={"required_approvals": wanted},
                    actor=actor,
                    reason=data["reason"],
                )
                url = reverse(
                    "admin:deployments_deploymentrequest_change", args=[change_request.pk]
                )
                others = [f for f in form.changed_data if f in ("name", "position")]
                not_applied(
                    request,
                    format_html(
                        "Not lowered yet: {} keeps requiring {} until another administrator "
                        'approves lowering it to {}. <a href="{}">Request #{}</a> is open for '
                        "it.{}",
                        current.slug,
                        _approvals(current.required_approvals),
                        wanted,
                        url,
                        change_request.pk,
                        f" Saved: {' and '.join(others)}." if others else "",
                    ),
                    fields=("required_approvals",),
                )
        return environment


@admin.register(Pointer)
class PointerAdmin(ReadOnlyAdminMixin, HistoryAdmin):
    """Read-only: a pointer moves only through deploy/rollback, which write the release log."""

    list_display = ("agent", "environment", "active_version", "updated_at", "updated_by")
    list_filter = ("environment", "agent")
    search_fields = ("agent__slug",)
    fields = ("agent", "environment", "stable_version", "updated_at", "updated_by")
    readonly_fields = fields
    updated_by = text_column("updated_by_label", "updated by")

    def get_queryset(self, request: HttpRequest) -> QuerySet[Pointer]:
        return without_version_text(
            super().get_queryset(request).select_related("agent", "environment"),
            "stable_version",
        )

    @admin.display(description="active version", ordering="stable_version__version_number")
    def active_version(self, obj: Pointer) -> SafeString | str:
        return version_link(obj.stable_version)


@admin.register(ReleaseLogEntry)
class ReleaseLogEntryAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Read-only: the release log is append-only; rows come from the release services."""

    list_display = (
        "created_at",
        "agent",
        "environment",
        "kind",
        "from_link",
        "to_link",
        "by",
        "reason_summary",
        "details_summary",
    )
    list_filter = ("environment", "kind", "agent")
    search_fields = ("agent__slug", "reason", "actor_label")
    date_hierarchy = "created_at"
    fields = (
        "created_at",
        "agent",
        "environment",
        "kind",
        "from_link",
        "to_link",
        "actor",
        "by",
        "reason",
        "details_summary",
        "details_json",
    )
    readonly_fields = fields
    by = text_column("actor_label", "by")
    reason_summary = text_column("reason", "reason", limit=80)

    def get_queryset(self, request: HttpRequest) -> QuerySet[ReleaseLogEntry]:
        return without_version_text(
            super().get_queryset(request).select_related("agent", "environment", "actor"),
            "from_version",
            "to_version",
        )

    @admin.display(description="from")
    def from_link(self, obj: ReleaseLogEntry) -> SafeString | str:
        return version_link(obj.from_version)

    @admin.display(description="to")
    def to_link(self, obj: ReleaseLogEntry) -> SafeString | str:
        return version_link(obj.to_version)

    @admin.display(description="details")
    def details_summary(self, obj: ReleaseLogEntry) -> SafeString | str:
        text = describe_release_details(obj)
        link = _related_links(obj)
        if text and link:
            return format_html("{} · {}", text, link)
        return text or link or "—"

    @admin.display(description="details (as stored)")
    def details_json(self, obj: ReleaseLogEntry) -> SafeString | str:
        return json_block(obj.details) if obj.details else "—"
