"""Admin for environments, pointers, the release log, canaries and API keys.

Invariants:
- Pointers and release-log rows are never written here: pointers move only through the
  Deploy… and Roll back… pages of an agent, which call deployments.services.releases.
- Canary rollouts and decisions are read-only here: they are created and changed only by
  deployments.services.canaries (the agent page's canary buttons, the CLI and canary_watch).
- Environments and canary policies are saved only by deployments.services.environments, with a
  reason (deployments.governance_admin: refusals stay on the form), and never deleted. A
  lower number of required approvals opens a settings request instead of being saved.
- A canary policy is saved only when the analysis can use it (clean_canary_policy).
- An API key is created by deployments.services.api_keys.create_api_key; its plaintext is shown
  once, in the response to the POST that created it, and stored nowhere (not in the
  session, not in a message cookie). key_hash is never displayed.
- Keys are created and revoked with a reason (deployments.services.api_keys.revoke_api_key),
  never deleted or edited.
"""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import (
    QuerySet,
)
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from agentconfig.core.actors import Actor
from agentconfig.core.admin_pages import (
    HistoryAdmin,
    ReadOnlyAdminMixin,
    ServiceAddAdmin,
    apply_service_error,
    page_context,
    page_path,
    refusals_as_pages,
    text_column,
)
from agentconfig.core.errors import Conflict, Forbidden
from deployments import governance_admin
from deployments.forms import ApiKeyAddForm, ApiKeyRevokeForm, CanaryPolicyForm, EnvironmentForm
from deployments.governance_admin import GovernedAdmin
from deployments.models import (
    ApiKey,
    CanaryDecision,
    CanaryPolicy,
    CanaryRollout,
    Environment,
    Pointer,
    ReleaseKind,
    ReleaseLogEntry,
    RequestKind,
)
from deployments.services import environments as environment_services
from deployments.services.api_keys import create_api_key, revoke_api_key
from deployments.services.environments import NO_POLICY_STATE
from deployments.services.requests import propose_change
from versions.admin_links import version_link, without_version_text

REVOKE_PERMISSION = "deployments.change_apikey"
DECISIONS_INLINE = 50


def _json_block(value: Any) -> SafeString:
    return format_html(
        '<pre class="ac-text">{}</pre>',
        json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False),
    )


def _percent(value: Any) -> str:
    return f"{value:g} %" if isinstance(value, int | float) else "?"


def describe_release_details(entry: ReleaseLogEntry) -> str:
    """A release-log row's details in words: the canary's steps or percentage change."""
    details = entry.details if isinstance(entry.details, dict) else {}
    if not details:
        return ""
    if entry.kind == ReleaseKind.CANARY_START:
        steps = details.get("steps")
        ramp = " → ".join(_percent(s) for s in steps) if isinstance(steps, list) else "?"
        bake = details.get("bake_seconds")
        minutes = f", ≥ {bake // 60} min each" if isinstance(bake, int) else ""
        return f"{ramp}{minutes}"
    if entry.kind == ReleaseKind.CANARY_CHANGE:
        return f"{_percent(details.get('from_percent'))} → {_percent(details.get('to_percent'))}"
    if "percent" in details:
        return f"at {_percent(details.get('percent'))}"
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
                governance_admin.not_applied(
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

    @admin.display(description="reason")
    def reason_summary(self, obj: ReleaseLogEntry) -> str:
        return obj.reason if len(obj.reason) <= 80 else f"{obj.reason[:79]}…"

    @admin.display(description="details")
    def details_summary(self, obj: ReleaseLogEntry) -> SafeString | str:
        text = describe_release_details(obj)
        link = _related_links(obj)
        if text and link:
            return format_html("{} · {}", text, link)
        return text or link or "—"

    @admin.display(description="details (as stored)")
    def details_json(self, obj: ReleaseLogEntry) -> SafeString | str:
        return _json_block(obj.details) if obj.details else "—"


@admin.register(CanaryPolicy)
class CanaryPolicyAdmin(GovernedAdmin):
    form = CanaryPolicyForm
    list_display = (
        "environment",
        "default_steps",
        "bake_minutes",
        "margin",
        "rollback_ratio",
        "max_latency_ratio",
        "max_duration_minutes",
        "deadline_action",
    )
    list_select_related = ("environment",)
    fieldsets = (
        (None, {"fields": ("environment", "default_steps", "bake_minutes")}),
        (
            "Promotion needs evidence",
            {
                "fields": ("margin", "max_error_increase", "promote_confidence"),
                "description": (
                    "A step passes only when the data shows, with this confidence, that the "
                    "canary's error rate is within its bar: margin x stable's to promote, a "
                    "wider bar for the early steps (the same harm spread over fewer users). "
                    "See docs/decisions/0016-canary-decisions.md."
                ),
            },
        ),
        (
            "Rollback",
            {
                "fields": ("rollback_ratio", "rollback_confidence", "min_regression", "power"),
                "description": (
                    "Roll back when the canary is shown worse than rollback ratio x stable's. "
                    "Before promotion, the step must have enough outcomes to catch a "
                    "regression of min regression with this power."
                ),
            },
        ),
        (
            "Latency and score",
            {"fields": ("max_latency_ratio", "latency_quantile", "max_score_drop")},
        ),
        (
            "Every canary ends",
            {"fields": ("srm_tolerance", "max_duration_minutes", "deadline_action")},
        ),
        ("Why", {"fields": ("reason", "expected_state")}),
    )

    def get_readonly_fields(
        self, request: HttpRequest, obj: CanaryPolicy | None = None
    ) -> tuple[str, ...]:
        # A policy belongs to its environment; another environment gets its own policy.
        return ("environment",) if obj is not None else ()

    def save_via_service(
        self, request: HttpRequest, form: forms.ModelForm, change: bool
    ) -> CanaryPolicy:
        data = form.cleaned_data
        return environment_services.set_canary_policy(
            environment=form.instance.environment if change else data["environment"],
            values={field: data[field] for field in environment_services.CANARY_POLICY_FIELDS},
            actor=Actor.of(request.user),
            reason=data["reason"],
            # An add page saw no policy: one saved meanwhile is not overwritten.
            expected_state=data["expected_state"] or (None if change else NO_POLICY_STATE),
        )


class CanaryDecisionInline(ReadOnlyAdminMixin, admin.TabularInline):
    """Read-only: decisions are written by the analysis only."""

    model = CanaryDecision
    fields = ("created_at", "step_number", "percent", "verdict", "explanation")
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True
    ordering = ("-id",)

    def get_queryset(self, request: HttpRequest) -> QuerySet[CanaryDecision]:
        return super().get_queryset(request).defer("inputs")

    @admin.display(description="step")
    def step_number(self, obj: CanaryDecision) -> int:
        return obj.step_index + 1

    @admin.display(description="percent")
    def percent(self, obj: CanaryDecision) -> str:
        return _percent(obj.basis_points / 100)


@admin.register(CanaryRollout)
class CanaryRolloutAdmin(ReadOnlyAdminMixin, HistoryAdmin):
    """Read-only: rollouts are created and changed only by deployments.services.canaries."""

    list_display = (
        "agent",
        "environment",
        "canary_link",
        "stable_link",
        "percent_column",
        "status",
        "ended_by_deadline",
        "started_at",
        "ended_at",
    )
    list_filter = ("status", "ended_by_deadline", "environment", "agent")
    search_fields = ("agent__slug", "end_reason", "started_by_label", "ended_by_label")
    date_hierarchy = "started_at"
    fields = (
        "id",
        "agent",
        "environment",
        "canary_link",
        "stable_link",
        "status",
        "percent_column",
        "steps_display",
        "started_at",
        "started_by",
        "step_started_at",
        "ended_at",
        "ended_by",
        "end_reason",
        "ended_by_deadline",
    )
    readonly_fields = fields
    inlines = [CanaryDecisionInline]
    started_by = text_column("started_by_label", "started by")
    ended_by = text_column("ended_by_label", "ended by")

    def get_queryset(self, request: HttpRequest) -> QuerySet[CanaryRollout]:
        return without_version_text(
            super().get_queryset(request).select_related("agent", "environment"),
            "canary_version",
            "stable_version",
        )

    def get_formset_kwargs(
        self, request: HttpRequest, obj: Any, inline: Any, prefix: str
    ) -> dict[str, Any]:
        kwargs = super().get_formset_kwargs(request, obj, inline, prefix)
        if isinstance(inline, CanaryDecisionInline):
            # canary_watch decides every minute: show the newest, link to the rest.
            newest = CanaryDecision.objects.filter(rollout=obj).order_by("-id")
            ids = list(newest.values_list("pk", flat=True)[:DECISIONS_INLINE])
            kwargs["queryset"] = kwargs["queryset"].filter(pk__in=ids)
        return kwargs

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        rollout = self.get_object(request, unquote(object_id))
        if rollout is not None:
            count = CanaryDecision.objects.filter(rollout=rollout).count()
            if count > DECISIONS_INLINE:
                url = reverse("admin:deployments_canarydecision_changelist")
                messages.info(
                    request,
                    format_html(
                        'Showing the newest {} of {} decisions. <a href="{}?rollout={}">All '
                        "decisions of this canary</a>.",
                        DECISIONS_INLINE,
                        count,
                        url,
                        rollout.pk,
                    ),
                )
        return super().change_view(request, object_id, form_url, extra_context)

    @admin.display(description="canary version", ordering="canary_version__version_number")
    def canary_link(self, obj: CanaryRollout) -> SafeString | str:
        return version_link(obj.canary_version)

    @admin.display(description="stable version")
    def stable_link(self, obj: CanaryRollout) -> SafeString | str:
        return version_link(obj.stable_version)

    @admin.display(description="percent", ordering="basis_points")
    def percent_column(self, obj: CanaryRollout) -> str:
        step = f" (step {obj.step_index + 1} of {len(obj.steps)})" if obj.is_running else ""
        return f"{_percent(obj.percent)}{step}"

    @admin.display(description="steps")
    def steps_display(self, obj: CanaryRollout) -> str:
        return (
            " → ".join(f"{_percent(bp / 100)} ≥ {bake // 60} min" for bp, bake in obj.steps)
            + " → promote"
        )


@admin.register(CanaryDecision)
class CanaryDecisionAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Read-only: the analysis' record, append-only."""

    list_display = ("created_at", "rollout", "step_number", "percent", "verdict", "summary")
    list_filter = ("verdict",)
    search_fields = ("explanation", "rollout__agent__slug")
    date_hierarchy = "created_at"
    fields = (
        "rollout",
        "created_at",
        "step_number",
        "percent",
        "verdict",
        "explanation",
        "inputs_json",
    )
    readonly_fields = fields

    def get_queryset(self, request: HttpRequest) -> QuerySet[CanaryDecision]:
        return without_version_text(
            super().get_queryset(request).select_related("rollout__agent", "rollout__environment"),
            "rollout__canary_version",
        )

    @admin.display(description="step")
    def step_number(self, obj: CanaryDecision) -> int:
        return obj.step_index + 1

    @admin.display(description="percent", ordering="basis_points")
    def percent(self, obj: CanaryDecision) -> str:
        return _percent(obj.basis_points / 100)

    @admin.display(description="explanation")
    def summary(self, obj: CanaryDecision) -> str:
        text = obj.explanation
        return text if len(text) <= 120 else f"{text[:119]}…"

    @admin.display(description="inputs")
    def inputs_json(self, obj: CanaryDecision) -> SafeString:
        return _json_block(obj.inputs)


class ApiKeyStatusFilter(admin.SimpleListFilter):
    title = "status"
    parameter_name = "status"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [("active", "Active"), ("revoked", "Revoked")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> QuerySet[ApiKey]:
        if self.value() == "active":
            return queryset.filter(revoked_at__isnull=True)
        if self.value() == "revoked":
            return queryset.filter(revoked_at__isnull=False)
        return queryset


@admin.register(ApiKey)
class ApiKeyAdmin(ServiceAddAdmin, HistoryAdmin):
    add_form = ApiKeyAddForm
    list_display = (
        "name",
        "environment",
        "key_id",
        "scope",
        "status",
        "created_at",
        "created_by",
        "revoked_at",
    )
    list_filter = (ApiKeyStatusFilter, "environment")
    search_fields = ("name", "key_id")
    list_select_related = ("environment",)
    # key_hash is deliberately absent: it is never shown, not even on history pages.
    fields = (
        "name",
        "environment",
        "scope",
        "key_id",
        "status",
        "created_at",
        "created_by",
        "revoked_at",
        "revoked_by",
    )
    readonly_fields = fields
    created_by = text_column("created_by_label", "created by")
    revoked_by = text_column("revoked_by_label", "revoked by")
    actions = ["revoke_selected"]

    # Keys are created and revoked by their services, never edited or deleted.
    def has_change_permission(self, request: HttpRequest, obj: ApiKey | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: ApiKey | None = None) -> bool:
        return False

    def has_revoke_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(REVOKE_PERMISSION)

    @admin.display(description="status", boolean=False)
    def status(self, obj: ApiKey) -> str:
        return "active" if obj.is_active else "revoked"

    def get_queryset(self, request: HttpRequest) -> QuerySet[ApiKey]:
        # The scope column names each key's agents: one query for the page, not one per row.
        return super().get_queryset(request).prefetch_related("agents")

    @admin.display(description="scope")
    def scope(self, obj: ApiKey) -> str:
        """Which agents and what the key may do; fixed at creation (rotate to change it)."""
        agents = ", ".join(sorted(a.slug for a in obj.agents.all()))
        served = agents or f"every agent of {obj.environment.slug}"
        does = [w for w, ok in (("reads configs", obj.can_read), ("reports", obj.can_report)) if ok]
        return f"{served}; {' and '.join(does)}"

    def add_view(
        self, request: HttpRequest, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        # Whichever button is used, a successful add answers with the one-time key page.
        only_save = {"show_save_and_add_another": False, "show_save_and_continue": False}
        return super().add_view(request, form_url, {**only_save, **(extra_context or {})})

    def create_via_service(self, request: HttpRequest, form: forms.BaseForm) -> HttpResponse:
        key, plaintext = create_api_key(
            environment=form.cleaned_data["environment"],
            name=form.cleaned_data["name"],
            actor=Actor.of(request.user),
            reason=form.cleaned_data["reason"],
            agents=form.cleaned_data["agents"],
            can_read=form.cleaned_data["can_read"],
            can_report=form.cleaned_data["can_report"],
        )
        self.log_addition(request, key, [{"added": {}}])
        context = page_context(
            request, self, f"API key {key.name} created", key=key, scope=self.scope(key)
        )
        # Rendered in the POST's own response, not after a redirect: a redirect would
        # need the plaintext stored somewhere (session, message cookie) to show it.
        context["plaintext"] = plaintext
        return TemplateResponse(
            request, "admin/deployments/apikey/created.html", context, status=201
        )

    def get_urls(self) -> list[URLPattern]:
        return [
            page_path(
                self,
                "<path:object_id>/revoke/",
                ApiKeyAdmin.revoke_view,
                "deployments_apikey_revoke",
            ),
            *super().get_urls(),
        ]

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        extra_context = {**(extra_context or {}), "can_revoke": self.has_revoke_permission(request)}
        return super().change_view(request, object_id, form_url, extra_context)

    @refusals_as_pages
    def revoke_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """Confirm (with a reason) on GET, revoke on POST through revoke_api_key."""
        key = self.get_object(request, unquote(object_id))
        if key is None:
            raise Http404(f"There is no API key with id {object_id!r}.")
        change_url = reverse("admin:deployments_apikey_change", args=[key.pk])
        form = ApiKeyRevokeForm(request.POST if request.method == "POST" else None)
        actor = Actor.of(request.user)
        actor.require(REVOKE_PERMISSION, "revoke API keys")
        if form.is_bound and form.is_valid():
            try:
                revoke_api_key(key=key, actor=actor, reason=form.cleaned_data["reason"])
            except Conflict as exc:  # revoked meanwhile: the key's page says so
                messages.error(request, exc.message)
                return HttpResponseRedirect(change_url)
            except ValidationError as exc:
                apply_service_error(form, exc)
            else:
                messages.success(
                    request,
                    f"Revoked API key {key.name!r}: runtimes presenting it are now refused.",
                )
                return HttpResponseRedirect(change_url)
        context = page_context(request, self, f"Revoke API key {key.name}?", key=key, form=form)
        return TemplateResponse(
            request, "admin/deployments/apikey/revoke_confirmation.html", context
        )

    @admin.action(description="Revoke selected API keys…", permissions=["revoke"])
    def revoke_selected(
        self, request: HttpRequest, queryset: QuerySet[ApiKey]
    ) -> TemplateResponse | None:
        """Django's delete-selected pattern: a confirmation page with a reason, then revoke."""
        keys = list(queryset.select_related("environment"))
        confirmed = request.POST.get("post") == "yes"
        form = ApiKeyRevokeForm(request.POST if confirmed else None)
        if not (confirmed and form.is_valid()):
            context = page_context(
                request,
                self,
                "Revoke API keys?",
                keys=keys,
                active_keys=[key for key in keys if key.is_active],
                action_checkbox_name=admin.helpers.ACTION_CHECKBOX_NAME,
                form=form,
            )
            return TemplateResponse(
                request, "admin/deployments/apikey/revoke_selected_confirmation.html", context
            )
        actor = Actor.of(request.user)
        revoked: list[str] = []
        for key in keys:
            try:
                revoke_api_key(key=key, actor=actor, reason=form.cleaned_data["reason"])
            except Forbidden as exc:
                messages.error(request, exc.message)
                return None
            except Conflict as exc:
                messages.warning(request, exc.message)
            else:
                revoked.append(key.name)
        if revoked:
            messages.success(request, f"Revoked {len(revoked)} API key(s): {', '.join(revoked)}.")
        return None
