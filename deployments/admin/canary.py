"""Admin for canary policies, rollouts and decisions (deployments.models.canary).

Invariants:
- Canary rollouts and decisions are read-only here: they are created and changed only by
  deployments.services.canaries (the agent page's canary buttons, the CLI and canary_watch).
- Canary policies are saved only by deployments.services.environments, with a reason
  (deployments.admin.governed: refusals stay on the form), and never deleted; only when
  the analysis can use them (clean_canary_policy).
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString

from agentconfig.core.admin_pages import (
    ChangePageMixin,
    HistoryAdmin,
    ReadOnlyAdminMixin,
    text_column,
)
from deployments.admin.core import json_block, percent_text
from deployments.admin.governed import EnvironmentPolicyAdmin
from deployments.forms import CanaryPolicyForm
from deployments.models import CanaryDecision, CanaryPolicy, CanaryRollout
from deployments.services import environments as environment_services
from versions.admin_links import version_link, without_version_text

DECISIONS_INLINE = 50


@admin.register(CanaryPolicy)
class CanaryPolicyAdmin(EnvironmentPolicyAdmin):
    form = CanaryPolicyForm
    policy_fields = environment_services.CANARY_POLICY_FIELDS
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

    def set_policy(self, **kwargs: Any) -> CanaryPolicy:
        return environment_services.set_canary_policy(**kwargs)


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
        return percent_text(obj.basis_points / 100)


@admin.register(CanaryRollout)
class CanaryRolloutAdmin(ChangePageMixin, ReadOnlyAdminMixin, HistoryAdmin):
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

    def change_page_context(self, request: HttpRequest, rollout: CanaryRollout) -> dict[str, Any]:
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
        return {}

    @admin.display(description="canary version", ordering="canary_version__version_number")
    def canary_link(self, obj: CanaryRollout) -> SafeString | str:
        return version_link(obj.canary_version)

    @admin.display(description="stable version")
    def stable_link(self, obj: CanaryRollout) -> SafeString | str:
        return version_link(obj.stable_version)

    @admin.display(description="percent", ordering="basis_points")
    def percent_column(self, obj: CanaryRollout) -> str:
        step = f" (step {obj.step_index + 1} of {len(obj.steps)})" if obj.is_running else ""
        return f"{percent_text(obj.percent)}{step}"

    @admin.display(description="steps")
    def steps_display(self, obj: CanaryRollout) -> str:
        return (
            " → ".join(f"{percent_text(bp / 100)} ≥ {bake // 60} min" for bp, bake in obj.steps)
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
    summary = text_column("explanation", "explanation", limit=120)

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
        return percent_text(obj.basis_points / 100)

    @admin.display(description="inputs")
    def inputs_json(self, obj: CanaryDecision) -> SafeString:
        return json_block(obj.inputs)
