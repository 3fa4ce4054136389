"""The deployment requests list (open first) and each request's page.

Requests are opened from an agent's page and reviewed, applied or withdrawn on their own
page (agentconfig.site.request_views), never edited or deleted here. They live in the UI
layer because one request page shows every app's part: the diff (versions), approvals
(deployments), the evaluation gate (evaluations) and flag changes (flags).
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import (
    Case,
    IntegerField,
    OuterRef,
    QuerySet,
    Subquery,
    UUIDField,
    Value,
    When,
)
from django.http import HttpRequest, HttpResponse
from django.urls import URLPattern
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString

from agentconfig.core.admin_pages import (
    HistoryAdmin,
    ReadOnlyAdminMixin,
    page_path,
    text_column,
)
from agentconfig.core.people import made_grants_since
from agentconfig.site import request_views as request_pages
from deployments.approvals import approvals_given
from deployments.models import DeploymentRequest, Pointer, RequestStatus
from deployments.services.requests import ApprovalState
from versions.admin_links import version_link, without_version_text


@admin.register(DeploymentRequest)
class DeploymentRequestAdmin(ReadOnlyAdminMixin, HistoryAdmin):
    """The requests list (open first) and each request's page, with review and apply.

    Opened from an agent's page (Request deployment…), closed by review, apply or withdraw:
    never added, edited or deleted here."""

    list_display = (
        "request_number",
        "status_badge",
        "target",
        "approvals",
        "requester",
        "asked",
    )
    list_display_links = ("request_number",)
    list_filter = ("status", "environment", "agent")
    search_fields = ("agent__slug", "reason", "requested_by_label")
    date_hierarchy = "created_at"
    # Not "requested_by": that is the user field, one query per row.
    requester = text_column("requested_by_label", "by")

    def get_queryset(self, request: HttpRequest) -> QuerySet[DeploymentRequest]:
        # The version active in each request's target now, so the approvals column can
        # tell stale approvals apart without a query per row.
        active = Pointer.objects.filter(
            agent=OuterRef("agent"), environment=OuterRef("environment")
        ).values("stable_version_id")[:1]
        return (
            without_version_text(
                super().get_queryset(request).select_related("agent", "environment"), "version"
            )
            # Version ids are UUIDs: say so, or SQLite hands back hex strings.
            .annotate(target_active_id=Subquery(active, output_field=UUIDField()))
            # Whether the requester created or promoted anyone since asking: where not,
            # valid_approvals has no audit question to ask per row.
            .annotate(
                requester_made_grants=made_grants_since(granter="requested_by", since="created_at")
            )
            .prefetch_related("reviews")
        )

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        # Open requests come first (get_ordering); the stock title says "Select … to view".
        title = {"title": "Deployment requests"}
        return super().changelist_view(request, {**title, **(extra_context or {})})

    def get_ordering(self, request: HttpRequest) -> tuple[Any, ...]:
        # Open requests first (they wait for someone), then the newest.
        open_first = Case(
            When(status=RequestStatus.OPEN, then=Value(0)),
            default=Value(1),
            output_field=IntegerField(),
        )
        return (open_first.asc(), "-created_at")

    @admin.display(description="request", ordering="id")
    def request_number(self, obj: DeploymentRequest) -> str:
        return f"#{obj.pk}"

    @admin.display(description="status", ordering="status")
    def status_badge(self, obj: DeploymentRequest) -> SafeString:
        return format_html(
            '<span class="ac-req-status ac-req-{}">{}</span>', obj.status, obj.get_status_display()
        )

    @admin.display(description="asks for", ordering="agent__slug")
    def target(self, obj: DeploymentRequest) -> SafeString:
        if not obj.is_release:
            # A flag or settings change: its one-line summary, no version.
            return format_html(
                '<span class="ac-nowrap">{} ({})</span>',
                obj.proposal.get("summary", obj.get_kind_display()),
                obj.environment.slug,
            )
        assert obj.agent is not None  # noqa: S101 - a release request names its agent
        steps = request_pages.plan_steps(obj)
        return format_html(
            '<span class="ac-nowrap">{} {} → {}</span>{}',
            obj.agent.slug,
            version_link(obj.version),
            obj.environment.slug,
            format_html(
                ' <span class="ac-badge ac-badge-canary">canary {} %</span>', " → ".join(steps)
            )
            if steps
            else "",
        )

    @admin.display(description="asked", ordering="created_at")
    def asked(self, obj: DeploymentRequest) -> SafeString:
        local = timezone.localtime(obj.created_at)
        return format_html(
            '<time datetime="{}" class="ac-nowrap">{}</time>',
            obj.created_at.isoformat(),
            local.strftime("%Y-%m-%d %H:%M"),
        )

    @admin.display(description="approvals")
    def approvals(self, obj: DeploymentRequest) -> SafeString:
        if not obj.is_release:
            # Whether they still count depends on the subject's state: the page says.
            return format_html(
                '<span class="quiet">{} of {} given</span>',
                approvals_given(obj),
                obj.environment.required_approvals,
            )
        state = ApprovalState(obj, current=getattr(obj, "target_active_id", None))
        if obj.status != RequestStatus.OPEN:
            return format_html('<span class="quiet">{} given</span>', state.valid + state.stale)
        mark, css = ("✓", "ac-ok") if state.enough else ("…", "ac-waiting")
        stale = f", {state.stale} no longer count" if state.stale else ""
        return format_html(
            '<span class="{}">{} {} of {}{}</span>', css, mark, state.valid, state.needed, stale
        )

    def get_urls(self) -> list[URLPattern]:
        actions = [
            ("review", request_pages.review_view),
            ("override-gate", request_pages.override_gate_view),
            ("apply", request_pages.apply_view),
            ("withdraw", request_pages.withdraw_view),
        ]
        return [
            *(
                page_path(
                    self,
                    f"<path:object_id>/{name}/",
                    view,
                    f"deployments_deploymentrequest_{name.replace('-', '_')}",
                )
                for name, view in actions
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
        # The request's own page: read-only facts, the diff, reviews, gate and actions.
        return request_pages.request_detail_view(self, request, object_id)
