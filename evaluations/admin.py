"""Admin for evaluation suites, suite versions, runs, policies and gate overrides.

Invariants:
- Suites are created by evaluations.services.suites.create_suite (with their first version) and
  their cases change only through the "New suite version" page, which creates a version;
  suite versions, cases, case results and overrides are never edited or deleted here.
- A run is started by evaluations.services.suites.start_run (queued for the worker, never run in
  the request) and cancelled by evaluations.services.suites.cancel_run, on POST after a
  confirmation page. Its page is read-only.
- An override is recorded by evaluations.services.gate_overrides, from the gate page,
  which shows the gate's verdict and the two runs before asking for the reason.
- A policy is saved only by evaluations.services.policies.set_evaluation_policy, with a
  reason (deployments.admin.governed: refusals stay on the form); never deleted here.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db import transaction
from django.db.models import OuterRef, QuerySet, Subquery
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import URLPattern, reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from agentconfig.core.actors import Actor
from agentconfig.core.admin_pages import (
    HistoryAdmin,
    ReadOnlyAdminMixin,
    ServiceAddAdmin,
    ServiceChangeMixin,
    page_path,
    refusals_as_pages,
    text_column,
)
from deployments.admin.governed import EnvironmentPolicyAdmin
from evaluations import admin_views as pages
from evaluations import gate as gates
from evaluations.forms import EvaluationPolicyForm, RunStartForm, SuiteAddForm
from evaluations.models import (
    EvaluationPolicy,
    EvaluationRun,
    EvaluationSuite,
    GateOverride,
    RunStatus,
    SuiteSource,
    SuiteVersion,
)
from evaluations.selectors import list_runs_with_progress
from evaluations.services import suites as suite_services
from evaluations.services.policies import POLICY_FIELDS, set_evaluation_policy


def _link(url: str, text: str) -> SafeString:
    return format_html('<a href="{}">{}</a>', url, text)


def _score(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


class DetailPageMixin:
    """The change page is our own read-only page, `detail_page(model_admin, request, obj)`."""

    detail_page: staticmethod[[admin.ModelAdmin, HttpRequest, Any], HttpResponse]

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        return _detail_page(self, request, object_id)


@refusals_as_pages
def _detail_page(
    model_admin: admin.ModelAdmin, request: HttpRequest, object_id: str
) -> HttpResponse:
    obj = pages.get_object_for_page(model_admin, request, object_id)
    return model_admin.detail_page(model_admin, request, obj)  # type: ignore[attr-defined]


@admin.register(EvaluationSuite)
class EvaluationSuiteAdmin(ServiceChangeMixin, ServiceAddAdmin, HistoryAdmin):
    add_form = SuiteAddForm
    list_display = ("__str__", "name", "latest_version", "case_count", "updated_at")
    list_filter = (("agent", admin.RelatedOnlyFieldListFilter),)
    search_fields = ("slug", "name", "agent__slug")
    fields = ("agent", "slug", "name", "description", "versions_list", "created_at", "updated_at")
    readonly_fields = ("agent", "slug", "versions_list", "created_at", "updated_at")

    def has_delete_permission(
        self, request: HttpRequest, obj: EvaluationSuite | None = None
    ) -> bool:
        return False  # runs name its versions; a suite is history once measured

    def get_queryset(self, request: HttpRequest) -> QuerySet[EvaluationSuite]:
        # The latest version's number and size in the same query as the suites.
        latest = SuiteVersion.objects.filter(suite=OuterRef("pk")).order_by("-version_number")
        return (
            super()
            .get_queryset(request)
            .select_related("agent")
            .annotate(
                latest_pk=Subquery(latest.values("pk")[:1]),
                latest_number=Subquery(latest.values("version_number")[:1]),
                latest_cases=Subquery(latest.values("case_count")[:1]),
            )
        )

    def get_urls(self) -> list[URLPattern]:
        return [
            page_path(
                self,
                "<path:object_id>/new-version/",
                pages.new_suite_version_view,
                "evaluations_evaluationsuite_new_version",
            ),
            *super().get_urls(),
        ]

    @admin.display(description="latest version")
    def latest_version(self, obj: EvaluationSuite) -> SafeString | str:
        # latest_pk and latest_number are annotated by get_queryset, unknown to the model type.
        if obj.latest_pk is None:  # type: ignore[attr-defined]
            return "—"
        url = reverse("admin:evaluations_suiteversion_change", args=[obj.latest_pk])  # type: ignore[attr-defined]
        return _link(url, f"v{obj.latest_number}")  # type: ignore[attr-defined]

    @admin.display(description="cases")
    def case_count(self, obj: EvaluationSuite) -> int | str:
        return getattr(obj, "latest_cases", None) or "—"

    @admin.display(description="versions")
    def versions_list(self, obj: EvaluationSuite) -> SafeString:
        rows = format_html_join(
            "",
            '<li><a href="{}">v{}</a> · {} cases · {} · {}</li>',
            (
                (
                    version.get_absolute_url(),
                    version.version_number,
                    version.case_count,
                    version.created_at.strftime("%Y-%m-%d %H:%M"),
                    version.change_description.splitlines()[0]
                    if version.change_description
                    else "",
                )
                for version in obj.versions.order_by("-version_number")[:20]
            ),
        )
        new_url = reverse("admin:evaluations_evaluationsuite_new_version", args=[obj.pk])
        return format_html(
            '<ul class="ac-eval-versions">{}</ul><p><a class="button" href="{}">Edit cases '
            "(creates a new version)…</a></p>",
            rows,
            new_url,
        )

    def save_model(
        self, request: HttpRequest, obj: EvaluationSuite, form: forms.ModelForm, change: bool
    ) -> None:
        # Only name and description are editable; they go through the service (history).
        original = EvaluationSuite.objects.get(pk=obj.pk)
        name, description = obj.name, obj.description
        obj.name, obj.description = original.name, original.description
        suite_services.update_suite(
            suite=obj, actor=Actor.of(request.user), name=name, description=description
        )

    def create_via_service(self, request: HttpRequest, form: forms.BaseForm) -> HttpResponse:
        data = form.cleaned_data
        actor = Actor.of(request.user)
        # One transaction: a suite whose first version is refused is not left behind empty.
        with transaction.atomic():
            suite = suite_services.create_suite(
                agent=data["agent"],
                slug=data["slug"],
                name=data["name"],
                description=data["description"],
                actor=actor,
            )
            version = suite_services.create_suite_version(
                suite=suite,
                actor=actor,
                cases=data["cases"],
                change_description=data["change_description"],
                source=SuiteSource.BROWSER,
            )
        messages.success(
            request, f"Created the suite {suite} with v1 ({version.case_count} cases)."
        )
        return HttpResponseRedirect(
            reverse("admin:evaluations_evaluationsuite_change", args=[suite.pk])
        )


@admin.register(SuiteVersion)
class SuiteVersionAdmin(DetailPageMixin, ReadOnlyAdminMixin, admin.ModelAdmin):
    """Created by the suite's "Edit cases" page or sync_evals; never edited or deleted."""

    detail_page = staticmethod(pages.suite_version_page)

    list_display = ("__str__", "case_count", "source", "created_at", "created_by")
    list_filter = ("source", ("suite__agent", admin.RelatedOnlyFieldListFilter))
    search_fields = ("suite__slug", "suite__agent__slug", "change_description")
    created_by = text_column("created_by_label", "created by")

    def get_queryset(self, request: HttpRequest) -> QuerySet[SuiteVersion]:
        return super().get_queryset(request).select_related("suite__agent")

    def get_urls(self) -> list[URLPattern]:
        return [
            page_path(
                self, "<path:object_id>/run/", pages.start_run_view, "evaluations_suiteversion_run"
            ),
            *super().get_urls(),
        ]


class RunStatusFilter(admin.SimpleListFilter):
    title = "status"
    parameter_name = "status"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return list(RunStatus.choices)

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        return queryset.filter(status=self.value()) if self.value() else queryset


@admin.register(EvaluationRun)
class EvaluationRunAdmin(DetailPageMixin, ServiceAddAdmin):
    add_form = RunStartForm
    detail_page = staticmethod(pages.run_page)
    list_display = (
        "created_at",
        "agent",
        "version_label",
        "suite_version",
        "status",
        "progress",
        "score_column",
        "error_count",
        "created_by",
    )
    list_filter = (RunStatusFilter, ("agent", admin.RelatedOnlyFieldListFilter))
    search_fields = ("agent__slug", "created_by_label")
    date_hierarchy = "created_at"
    created_by = text_column("created_by_label", "started by")

    def has_delete_permission(self, request: HttpRequest, obj: EvaluationRun | None = None) -> bool:
        return False  # scores are evidence for the gate and overrides

    def get_queryset(self, request: HttpRequest) -> QuerySet[EvaluationRun]:
        return list_runs_with_progress(super().get_queryset(request)).defer(
            "version__system_prompt", "version__guardrails", "judge_prompt", "recorded_answers"
        )

    @admin.display(description="version", ordering="version__version_number")
    def version_label(self, obj: EvaluationRun) -> str:
        return obj.version.label

    @admin.display(description="progress")
    def progress(self, obj: EvaluationRun) -> str:
        return f"{getattr(obj, 'cases_done', '?')} / {obj.cases_total}"

    @admin.display(description="score", ordering="score")
    def score_column(self, obj: EvaluationRun) -> str:
        return _score(obj.score)

    def get_urls(self) -> list[URLPattern]:
        return [
            page_path(
                self,
                "<path:object_id>/cancel/",
                pages.cancel_run_view,
                "evaluations_evaluationrun_cancel",
            ),
            page_path(
                self,
                "<path:object_id>/compare/<path:baseline_id>/",
                pages.compare_runs_view,
                "evaluations_evaluationrun_compare",
            ),
            *super().get_urls(),
        ]

    def create_via_service(self, request: HttpRequest, form: forms.BaseForm) -> HttpResponse:
        data = form.cleaned_data
        run = suite_services.start_run(
            version=data["version"],
            suite_version=data["suite_version"],
            environment=data["environment"],
            actor=Actor.of(request.user),
        )
        messages.success(
            request,
            f"Queued: {run.version.label} on {run.suite_version.label}, {run.cases_total} cases. "
            "The worker runs it; this page follows its progress.",
        )
        return HttpResponseRedirect(run.get_absolute_url())


@admin.register(EvaluationPolicy)
class EvaluationPolicyAdmin(EnvironmentPolicyAdmin):
    form = EvaluationPolicyForm
    policy_fields = POLICY_FIELDS
    list_display = ("environment", "required", "tolerance", "suite", "endpoint", "judge")
    list_select_related = ("environment",)
    fieldsets = (
        (None, {"fields": ("environment", "required", "tolerance", "suite_slug")}),
        (
            "Endpoint and judge (empty: the EVAL_* settings)",
            {"fields": ("base_url", "api_key_env", "judge_model", "judge_prompt")},
        ),
        ("Why", {"fields": ("reason", "expected_state")}),
    )

    def set_policy(self, **kwargs: Any) -> EvaluationPolicy:
        return set_evaluation_policy(**kwargs)

    @admin.display(description="suite")
    def suite(self, obj: EvaluationPolicy) -> str:
        return obj.suite_slug or "the agent's only suite"

    @admin.display(description="endpoint")
    def endpoint(self, obj: EvaluationPolicy) -> str:
        return obj.base_url or "EVAL_API_BASE_URL"

    @admin.display(description="judge")
    def judge(self, obj: EvaluationPolicy) -> str:
        return obj.judge_model or "EVAL_JUDGE_MODEL"


@admin.register(GateOverride)
class GateOverrideAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("created_at", "agent", "environment", "version", "gate_status", "by", "reason")
    list_filter = ("environment", ("agent", admin.RelatedOnlyFieldListFilter))
    search_fields = ("agent__slug", "actor_label", "reason")
    fields = (
        "created_at",
        "agent",
        "environment",
        "version",
        "gate_status",
        "explanation",
        "candidate_run",
        "baseline_run",
        "actor",
        "by",
        "reason",
    )
    readonly_fields = fields
    by = text_column("actor_label", "by")

    # Never edited or deleted (ReadOnlyAdminMixin); added on the gate page by those who may.
    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.has_perm(gates.OVERRIDE_PERMISSION)

    def get_queryset(self, request: HttpRequest) -> QuerySet[GateOverride]:
        return super().get_queryset(request).select_related("agent", "environment", "version")

    def add_view(
        self, request: HttpRequest, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        # Adding an override is the gate page: the verdict and the runs come before the reason.
        return pages.gate_view(self, request)
