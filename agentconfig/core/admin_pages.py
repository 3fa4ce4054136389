"""Building blocks shared by our admin pages (agents, versions, deployments, API keys).

Invariants:
- A refusal from a service never becomes a 500 or a success message: a ValidationError
  lands on the form next to its field, Forbidden renders a 403 page that names the
  missing permission, and nothing is written.
- History pages are read-only. simple-history's per-record page saves the historical
  state on POST even when SIMPLE_HISTORY_REVERT_DISABLED is set (the setting only hides
  the button), which would move a pointer without a release-log row; POST is refused.
- Objects whose creation has rules (agents, API keys) are created by their service,
  never by ModelAdmin.save_model, so the admin add page obeys the same rules as the CLI.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import TYPE_CHECKING, Any, cast

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.options import IS_POPUP_VAR
from django.contrib.admin.utils import unquote
from django.core.exceptions import NON_FIELD_ERRORS, PermissionDenied, ValidationError
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseNotAllowed,
    HttpResponseRedirect,
)
from django.template.response import TemplateResponse
from simple_history.admin import SimpleHistoryAdmin

from agentconfig.core.errors import Forbidden, ServiceError

if TYPE_CHECKING:
    from agentconfig.models import Agent

AdminPageView = Callable[..., HttpResponse]


def apply_service_error(form: forms.BaseForm, error: ValidationError) -> None:
    """Attach a service's ValidationError to `form`, next to the field it names."""
    if not hasattr(error, "error_dict"):
        form.add_error(None, error)
        return
    for field, errors in error.error_dict.items():
        if field in form.fields:
            form.add_error(field, errors)
        elif field == NON_FIELD_ERRORS:
            form.add_error(None, errors)
        else:
            # The service named something the form does not show: keep the name in the text.
            form.add_error(None, [f"{field}: {m}" for e in errors for m in e.messages])


def render_forbidden(
    request: HttpRequest, model_admin: admin.ModelAdmin, message: str
) -> TemplateResponse:
    """A 403 page inside the admin that says what is missing (Django's default says nothing)."""
    context = {
        **model_admin.admin_site.each_context(request),
        "title": "Permission needed",
        "opts": model_admin.opts,
        "message": message,
    }
    return TemplateResponse(request, "admin/agentconfig/forbidden.html", context, status=403)


def refusals_as_pages(view: AdminPageView) -> AdminPageView:
    """Render Forbidden, wherever a page view or its service raises it, as the 403 page."""

    @wraps(view)
    def wrapper(
        model_admin: admin.ModelAdmin, request: HttpRequest, *args: Any, **kwargs: Any
    ) -> HttpResponse:
        try:
            return view(model_admin, request, *args, **kwargs)
        except Forbidden as exc:
            return render_forbidden(request, model_admin, exc.message)

    return wrapper


def get_agent_for_page(
    model_admin: admin.ModelAdmin, request: HttpRequest, object_id: str
) -> Agent:
    """The agent a page is about; Http404 if missing, Forbidden if the user may not see it."""
    agent = model_admin.get_object(request, unquote(object_id))
    if agent is None:
        raise Http404(f"There is no agent with id {object_id!r}.")
    if not model_admin.has_view_permission(request, agent):
        raise Forbidden(
            f"{request.user.get_username()} may not view agents: this needs the permission "
            "'agentconfig.view_agent'. Ask an administrator to grant it."
        )
    return agent


def page_context(
    request: HttpRequest, model_admin: admin.ModelAdmin, title: str, **extra: Any
) -> dict[str, Any]:
    """The context every admin page needs (site header, sidebar, breadcrumbs' opts)."""
    return {
        **model_admin.admin_site.each_context(request),
        "title": title,
        "opts": model_admin.opts,
        **extra,
    }


def text_column(field: str, description: str) -> Callable[[Any, Any], str]:
    """A list/detail column showing a text field under a plainer heading (e.g. "created by")."""

    @admin.display(description=description, ordering=field)
    def column(model_admin: Any, obj: Any) -> str:
        return getattr(obj, field)

    return column


class HistoryAdmin(SimpleHistoryAdmin):
    """SimpleHistoryAdmin whose history pages can be read but never posted to."""

    def history_form_view(
        self,
        request: HttpRequest,
        object_id: str,
        version_id: str,
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        if request.method not in ("GET", "HEAD"):
            return HttpResponseNotAllowed(["GET", "HEAD"])
        return super().history_form_view(request, object_id, version_id, extra_context)


class ServiceChangeMixin:
    """The stock change form whose `save_model` calls a service: a refusal leaves nothing
    saved (the form's transaction rolls back) and is shown on the same page, never a 500."""

    def changeform_view(
        self,
        request: HttpRequest,
        object_id: str | None = None,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        try:
            # A mixin: super() is the ModelAdmin it is mixed into, which mypy cannot know.
            return super().changeform_view(  # type: ignore[misc]
                request, object_id, form_url, extra_context
            )
        except ValidationError as exc:
            messages.error(request, "Nothing was saved: " + " ".join(exc.messages))
        except ServiceError as exc:
            messages.error(request, f"Nothing was saved: {exc.message}")
        return HttpResponseRedirect(request.get_full_path())


class ServiceDeleteMixin:
    """The stock delete page, whose service refusals are shown, never a 500.

    `delete_model` calls a service; a Forbidden refusal is the admin's 403 page with the
    service's words, any other refusal a message on the object's page (nothing deleted).
    """

    def delete_view(
        self, request: HttpRequest, object_id: str, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        # A mixin: super() and self are the ModelAdmin it is mixed into (mypy cannot know).
        try:
            return super().delete_view(request, object_id, extra_context)  # type: ignore[misc]
        except Forbidden as exc:
            return render_forbidden(request, self, exc.message)  # type: ignore[arg-type]
        except ServiceError as exc:
            messages.error(request, f"Nothing was deleted: {exc.message}")
            return HttpResponseRedirect(request.path.removesuffix("delete/") or "../")


class ServiceAddAdmin(admin.ModelAdmin):
    """The stock add page, but the object is created by a service whose refusals stay on the form.

    Subclasses set `add_form` and implement `create_via_service`, which calls the service
    and returns the response to send after success.
    """

    add_form: type[forms.BaseForm]

    def create_via_service(self, request: HttpRequest, form: forms.BaseForm) -> HttpResponse:
        raise NotImplementedError

    def add_view(
        self, request: HttpRequest, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        if not self.has_add_permission(request):
            raise PermissionDenied
        form = self.add_form(request.POST if request.method == "POST" else None)
        if form.is_bound and form.is_valid():
            try:
                return self.create_via_service(request, form)
            except ValidationError as exc:
                apply_service_error(form, exc)
            except Forbidden as exc:
                return render_forbidden(request, self, exc.message)
            except ServiceError as exc:
                form.add_error(None, exc.message)
        fieldsets = [(None, {"fields": list(form.fields)})]
        # AdminForm and AdminErrorList take any form; django-stubs says a ModelForm.
        as_model_form = cast("forms.ModelForm[Any]", form)
        admin_form = helpers.AdminForm(
            as_model_form, fieldsets, self.get_prepopulated_fields(request), model_admin=self
        )
        context = {
            **self.admin_site.each_context(request),
            "title": f"Add {self.opts.verbose_name}",
            "subtitle": None,
            "adminform": admin_form,
            "object_id": None,
            "original": None,
            "is_popup": IS_POPUP_VAR in request.POST or IS_POPUP_VAR in request.GET,
            "to_field": None,
            "media": self.media + admin_form.media,
            "inline_admin_formsets": [],
            "errors": helpers.AdminErrorList(as_model_form, []),
            "preserved_filters": self.get_preserved_filters(request),
            **(extra_context or {}),
        }
        return self.render_change_form(request, context, add=True, form_url=form_url)
