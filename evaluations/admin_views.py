"""The evaluation pages inside the admin: new suite version, run, cancel, compare, override.

Invariants:
- Every page checks the permission it needs first (a 403 page that names it); the
  services check again when a change is applied.
- Writes happen only on POST, through evaluations.services.suites or evaluations.gate; a refusal
  is shown on the form or as an error message, never as a success.
- A run page never waits for the run: it shows the stored progress and reloads itself
  while the run is queued or running.
- What an endpoint answered (CaseResult.error_detail, a remote server's text) is shown
  only to those who may see the endpoint's settings (the evaluation policy's view or
  change permission), truncated and autoescaped; everyone else sees our own message.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib import admin, messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse

from agentconfig.core import admin_pages
from agentconfig.core.actors import Actor
from agentconfig.core.admin_pages import (
    AdminPageView,
    Refused,
    call_service,
    page_context,
    refusals_as_pages,
)
from agentconfig.core.errors import Conflict
from agentconfig.models import Agent
from deployments.models import Environment
from evaluations import gate as gates
from evaluations.cases import dump_cases
from evaluations.forms import GateOverrideForm, RunStartForm, SuiteVersionForm
from evaluations.models import EvaluationRun, EvaluationSuite, SuiteSource, SuiteVersion
from evaluations.selectors import (
    build_run_comparison,
    get_latest_suite_version,
    get_run_progress,
    list_case_rows,
    list_comparable_runs,
)
from evaluations.services import suites as suite_services
from evaluations.services.gate_overrides import record_gate_override
from versions.models import AgentVersion

RELOAD_SECONDS = 3
ENDPOINT_DETAIL_PERMISSIONS = (
    "evaluations.view_evaluationpolicy",
    "evaluations.change_evaluationpolicy",
)


def may_see_endpoint_details(user: Any) -> bool:
    """Whether `user` may read what an evaluation endpoint answered (its policy's permission)."""
    return any(user.has_perm(permission) for permission in ENDPOINT_DETAIL_PERMISSIONS)


def get_object_for_page(model_admin: admin.ModelAdmin, request: HttpRequest, object_id: str) -> Any:
    """The object a page is about (admin_pages.get_object_for_page, with this app's wording)."""
    return admin_pages.get_object_for_page(
        model_admin, request, object_id, ask="Ask an administrator."
    )


ChangePage = Callable[[admin.ModelAdmin, HttpRequest, Any, Actor], HttpResponse]


def change_page(permission: str, action: str) -> Callable[[ChangePage], AdminPageView]:
    """A page that changes one object (URL part object_id): 404 if it is unknown, Forbidden
    (the 403 page) unless the user may view it and holds `permission`. The view gets the
    object and the actor."""

    def decorate(view: ChangePage) -> AdminPageView:
        @refusals_as_pages
        @wraps(view)
        def page(
            model_admin: admin.ModelAdmin, request: HttpRequest, object_id: str
        ) -> HttpResponse:
            obj = get_object_for_page(model_admin, request, object_id)
            actor = Actor.of(request.user)
            actor.require(permission, action)
            return view(model_admin, request, obj, actor)

        return page

    return decorate


def _render(
    request: HttpRequest, model_admin: admin.ModelAdmin, template: str, title: str, **extra: Any
) -> TemplateResponse:
    """One of our pages under templates/admin/evaluations/, in the admin's frame."""
    context = page_context(request, model_admin, title, **extra)
    return TemplateResponse(request, f"admin/evaluations/{template}.html", context)


# --- suites ------------------------------------------------------------------------------


@change_page(suite_services.ADD_SUITE_VERSION_PERMISSION, "create suite versions")
def new_suite_version_view(
    model_admin: admin.ModelAdmin, request: HttpRequest, suite: EvaluationSuite, actor: Actor
) -> HttpResponse:
    """Edit a suite's cases; saving creates the suite's next version."""
    latest = get_latest_suite_version(suite)
    if request.method == "POST":
        form = SuiteVersionForm(request.POST)
        if form.is_valid():
            version = call_service(
                form,
                suite_services.create_suite_version,
                suite=suite,
                actor=actor,
                cases=form.cleaned_data["cases"],
                change_description=form.cleaned_data["change_description"],
                source=SuiteSource.BROWSER,
            )
            if not isinstance(version, Refused):
                messages.success(
                    request,
                    f"Saved {version.label} with {version.case_count} cases. Runs on earlier "
                    "versions keep their scores; the gate compares runs on the same version.",
                )
                return HttpResponseRedirect(version.get_absolute_url())
    else:
        initial = {"cases": dump_cases(suite_services.cases_of(latest)) if latest else ""}
        form = SuiteVersionForm(initial=initial)
    return _render(
        request,
        model_admin,
        "evaluationsuite/new_version",
        f"New version of the suite {suite}",
        suite=suite,
        latest=latest,
        next_number=(latest.version_number + 1) if latest else 1,
        form=form,
    )


def suite_version_page(
    model_admin: admin.ModelAdmin, request: HttpRequest, version: SuiteVersion
) -> TemplateResponse:
    """A suite version's cases and the runs measured on it."""
    runs = (
        EvaluationRun.objects.filter(suite_version=version)
        .select_related("version")
        .order_by("-created_at")[:50]
    )
    can_run = request.user.has_perm(suite_services.RUN_PERMISSION)
    form = RunStartForm(suite_version=version) if can_run else None
    return _render(
        request,
        model_admin,
        "suiteversion/detail",
        str(version),
        version=version,
        suite=version.suite,
        cases=version.cases.order_by("position"),
        runs=runs,
        form=form,
    )


@change_page(suite_services.RUN_PERMISSION, "run evaluations")
def start_run_view(
    model_admin: admin.ModelAdmin, request: HttpRequest, version: SuiteVersion, actor: Actor
) -> HttpResponse:
    """Run a version of the suite's agent on this suite version (queued for the worker)."""
    form = RunStartForm(
        request.POST if request.method == "POST" else None,
        suite_version=version,
        initial={"suite_version": version.pk},
    )
    if form.is_bound and form.is_valid():
        run = call_service(
            form,
            suite_services.start_run,
            version=form.cleaned_data["version"],
            suite_version=form.cleaned_data["suite_version"],
            environment=form.cleaned_data["environment"],
            actor=actor,
        )
        if not isinstance(run, Refused):
            messages.success(
                request,
                f"Queued: {run.version.label} on {run.suite_version.label}, {run.cases_total} "
                "cases. The worker runs it; this page follows its progress.",
            )
            return HttpResponseRedirect(run.get_absolute_url())
    return _render(
        request,
        model_admin,
        "suiteversion/run",
        f"Run a version on {version}",
        version=version,
        suite=version.suite,
        form=form,
    )


# --- runs ----------------------------------------------------------------------------


def run_page(
    model_admin: admin.ModelAdmin, request: HttpRequest, run: EvaluationRun
) -> TemplateResponse:
    """A run's progress, settings, score and every case's answer, score and rationale."""
    done, total = get_run_progress(run)
    can_cancel = (
        not run.is_finished
        and run.cancel_requested_at is None
        and request.user.has_perm(suite_services.CANCEL_PERMISSION)
    )
    return _render(
        request,
        model_admin,
        "evaluationrun/detail",
        f"Run of {run.version.label} on {run.suite_version.label}",
        run=run,
        done=done,
        total=total,
        percent=round(100 * done / total) if total else 100,
        rows=list_case_rows(run),
        comparable=list_comparable_runs(run)[:20] if run.is_finished else [],
        can_cancel=can_cancel,
        reload_seconds=None if run.is_finished else RELOAD_SECONDS,
        show_endpoint_details=may_see_endpoint_details(request.user),
    )


@change_page(suite_services.CANCEL_PERMISSION, "cancel evaluation runs")
def cancel_run_view(
    model_admin: admin.ModelAdmin, request: HttpRequest, run: EvaluationRun, actor: Actor
) -> HttpResponse:
    """Confirm on GET, cancel on POST through evaluations.services.suites.cancel_run."""
    if request.method == "POST":
        try:
            suite_services.cancel_run(run=run, actor=actor)
        except Conflict as exc:
            messages.error(request, f"Not cancelled: {exc.message}")
        else:
            messages.success(
                request,
                "Cancelling: no new case starts; calls already running finish and are kept.",
            )
        return HttpResponseRedirect(run.get_absolute_url())
    done, total = get_run_progress(run)
    return _render(
        request,
        model_admin,
        "evaluationrun/cancel_confirmation",
        f"Cancel the run of {run.version.label}?",
        run=run,
        done=done,
        total=total,
    )


@refusals_as_pages
def compare_runs_view(
    model_admin: admin.ModelAdmin, request: HttpRequest, object_id: str, baseline_id: str
) -> HttpResponse:
    """Two runs side by side, per case, regressions first."""
    candidate: EvaluationRun = get_object_for_page(model_admin, request, object_id)
    baseline: EvaluationRun = get_object_for_page(model_admin, request, baseline_id)
    return _render(
        request,
        model_admin,
        "evaluationrun/compare",
        f"{candidate.version.label} compared with {baseline.version.label}",
        run=candidate,
        comparison=build_run_comparison(candidate, baseline),
        show_endpoint_details=may_see_endpoint_details(request.user),
    )


# --- gate ----------------------------------------------------------------------------------


@refusals_as_pages
def gate_view(model_admin: admin.ModelAdmin, request: HttpRequest) -> HttpResponse:
    """The gate for (agent, environment, version), and the override form when it refuses."""
    actor = Actor.of(request.user)
    actor.require(gates.OVERRIDE_PERMISSION, "override the evaluation gate")
    params = request.POST if request.method == "POST" else request.GET
    agents = Agent.objects.order_by("slug")
    environments = Environment.objects.all()
    agent = agents.filter(slug=params.get("agent", "")).first()
    environment = environments.filter(slug=params.get("environment", "")).first()
    version = None
    if agent is not None and params.get("version", "").isdigit():
        version = AgentVersion.objects.filter(
            agent=agent, version_number=int(params["version"])
        ).first()
    result = comparison = None
    form = GateOverrideForm(request.POST if request.method == "POST" else None)
    if agent is not None and environment is not None and version is not None:
        if request.method == "POST" and form.is_valid():
            override = call_service(
                form,
                record_gate_override,
                agent=agent,
                environment=environment,
                version=version,
                actor=actor,
                reason=form.cleaned_data["reason"],
            )
            if not isinstance(override, Refused):
                messages.success(
                    request,
                    f"Recorded: {version.label} of {agent.slug} may go into "
                    f"{environment.slug} despite the evaluation ({override.gate_status}).",
                )
                return HttpResponseRedirect(reverse("admin:evaluations_gateoverride_changelist"))
        result = gates.check_gate(agent=agent, environment=environment, version=version)
        if result.candidate_run and result.baseline_run:
            comparison = build_run_comparison(result.candidate_run, result.baseline_run)
    return _render(
        request,
        model_admin,
        "gateoverride/gate",
        "Evaluation gate",
        agents=agents,
        environments=environments,
        agent=agent,
        environment=environment,
        version=version,
        version_number=params.get("version", ""),
        result=result,
        comparison=comparison,
        form=form,
        show_endpoint_details=may_see_endpoint_details(request.user),
    )
