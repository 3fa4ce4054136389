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
- Records that only services write (release log, rollouts, decisions) are read-only
  here: ReadOnlyAdminMixin answers no to add, change and delete.

The pieces every admin page uses:
- `page_path`: a custom page of a ModelAdmin as a named URL, behind the admin's login.
- `call_service`: call a service for a form; a refusal lands on the form (ValidationError
  next to its field, any other ServiceError above the fields) and comes back as
  `Refused(status)`, Forbidden propagates (refusals_as_pages renders it). Stock change
  forms do the same through ServiceChangeMixin.
- `ReadOnlyAdminMixin`: no add, change or delete, for admins and inlines.
- `ChangePageMixin`: a stock change page with more context (`change_page_context`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import wraps
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar, cast

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.options import IS_POPUP_VAR
from django.contrib.admin.utils import unquote
from django.core.exceptions import NON_FIELD_ERRORS, PermissionDenied, ValidationError
from django.db import transaction
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseNotAllowed,
    HttpResponseRedirect,
)
from django.template.response import TemplateResponse
from django.urls import URLPattern, path
from simple_history.admin import SimpleHistoryAdmin

from agentconfig.core.errors import Forbidden, ServiceError

if TYPE_CHECKING:
    from django.db.models import QuerySet

    from agentconfig.models import Agent

AdminPageView = Callable[..., HttpResponse]
P = ParamSpec("P")
T = TypeVar("T")
# An attribute of the HttpRequest (never of the shared ModelAdmin): the refusal to show.
_REFUSAL = "_service_refusal"


def page_path(
    model_admin: admin.ModelAdmin,
    route: str,
    view: AdminPageView,
    name: str,
    kwargs: dict[str, Any] | None = None,
) -> URLPattern:
    """A custom admin page as a named URL: `view(model_admin, request, **url parts)`,
    reachable only by logged-in staff (admin_site.admin_view).

    `view` is a page function taking the ModelAdmin first, or a method of the ModelAdmin's
    class (`type(self).revoke_view`).
    """

    @wraps(view)
    def bound(request: HttpRequest, *args: Any, **url_kwargs: Any) -> HttpResponse:
        return view(model_admin, request, *args, **url_kwargs)

    return path(route, model_admin.admin_site.admin_view(bound), kwargs, name=name)


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


def show_refusal(form: forms.BaseForm, error: ValidationError | ServiceError) -> None:
    """Put a service's refusal on `form`: a ValidationError next to the field it names,
    any other refusal in the service's words above the fields."""
    if isinstance(error, ValidationError):
        apply_service_error(form, error)
    else:
        form.add_error(None, error.message)


@dataclass(frozen=True)
class Refused:
    """A service refused; its words are on the form. `status`: that of the page showing it."""

    status: int


def call_service(
    form: forms.BaseForm, service: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs
) -> T | Refused:
    """`service(*args, **kwargs)`, or Refused with the refusal shown on `form`.

    A ValidationError is a 200 (the input is wrong: correct it), any other ServiceError its
    own status (409 for a Conflict, ...). Forbidden is not caught: a page decorated with
    refusals_as_pages renders it as the 403 page that names the missing permission.
    """
    try:
        return service(*args, **kwargs)
    except Forbidden:
        raise
    except ValidationError as exc:
        show_refusal(form, exc)
        return Refused(200)
    except ServiceError as exc:
        show_refusal(form, exc)
        return Refused(exc.http_status)


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


def _page_for_methods(methods: tuple[str, ...], view: AdminPageView) -> AdminPageView:
    @refusals_as_pages
    @wraps(view)
    def wrapper(
        model_admin: admin.ModelAdmin, request: HttpRequest, *args: Any, **kwargs: Any
    ) -> HttpResponse:
        if request.method not in methods:
            return HttpResponseNotAllowed(list(methods))
        return view(model_admin, request, *args, **kwargs)

    return wrapper


def read_only_page(view: AdminPageView) -> AdminPageView:
    """A page that only shows: GET and HEAD (anything else a 405), Forbidden as the 403 page."""
    return _page_for_methods(("GET", "HEAD"), view)


def apply_step(view: AdminPageView) -> AdminPageView:
    """The step of a page that writes: POST only (any other method is a 405 and changes
    nothing), Forbidden as the 403 page."""
    return _page_for_methods(("POST",), view)


def get_object_for_page(
    model_admin: admin.ModelAdmin,
    request: HttpRequest,
    object_id: str,
    *,
    ask: str = "Ask an administrator to grant it.",
) -> Any:
    """The object a page is about; Http404 if missing, Forbidden (naming the view permission,
    then `ask`) if the user may not see it."""
    obj = model_admin.get_object(request, unquote(object_id))
    opts = model_admin.opts
    if obj is None:
        raise Http404(f"There is no {opts.verbose_name} with id {object_id!r}.")
    if not model_admin.has_view_permission(request, obj):
        raise Forbidden(
            f"{request.user.get_username()} may not view {opts.verbose_name_plural}: this needs "
            f"the permission '{opts.app_label}.view_{opts.model_name}'. {ask}"
        )
    return obj


def get_agent_for_page(
    model_admin: admin.ModelAdmin, request: HttpRequest, object_id: str
) -> Agent:
    """The agent a page is about (get_object_for_page)."""
    agent: Agent = get_object_for_page(model_admin, request, object_id)
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


def shortened(text: str, limit: int) -> str:
    """`text`, cut to `limit` characters with an ellipsis when longer."""
    return text if len(text) <= limit else f"{text[: limit - 1]}…"


def text_column(
    field: str, description: str, *, limit: int | None = None
) -> Callable[[Any, Any], str]:
    """A list/detail column showing a text field under a plainer heading (e.g. "created by");
    with `limit`, shortened to that many characters (and not sortable)."""

    @admin.display(description=description, ordering=field if limit is None else None)
    def column(model_admin: Any, obj: Any) -> str:
        text = getattr(obj, field)
        return text if limit is None else shortened(text, limit)

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


class ReadOnlyAdminMixin:
    """An admin (or inline) for records only services write: no add, change or delete."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class ChangePageMixin:
    """A stock change page with more on it (an overview, links, what the user may do):
    `change_page_context(request, obj)` joins the page's context when the user may view obj."""

    def change_page_context(self, request: HttpRequest, obj: Any) -> dict[str, Any]:
        return {}

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        # A mixin: self and super() are the ModelAdmin it is mixed into (mypy cannot know).
        obj = self.get_object(request, unquote(object_id))  # type: ignore[attr-defined]
        if obj is not None and self.has_view_permission(request, obj):  # type: ignore[attr-defined]
            extra_context = {**(extra_context or {}), **self.change_page_context(request, obj)}
        return super().change_view(  # type: ignore[misc]
            request, object_id, form_url, extra_context
        )


def _form_with_refusal(
    form_class: type[forms.ModelForm], error: ValidationError | ServiceError, prefix: str
) -> type[forms.ModelForm]:
    """`form_class`, whose validation ends with the service's refusal on the form."""

    # A subclass of a class given at runtime, which mypy cannot follow.
    class RefusedForm(form_class):  # type: ignore[valid-type,misc]
        def clean(self) -> dict[str, Any]:
            cleaned = super().clean()
            if isinstance(error, ValidationError):
                apply_service_error(self, error)
            else:
                self.add_error(None, f"{prefix}{error.message}")
            return cleaned

    RefusedForm.__name__ = form_class.__name__
    return RefusedForm


class ServiceChangeMixin:
    """The stock add/change form whose save calls a service (`save_model`, or `save_form`).

    A refusal (ValidationError, or any ServiceError: Forbidden, Conflict, ...) leaves nothing
    saved (the view's transaction rolls back) and shows the same form again, status 200,
    with what was typed and the service's words on it: next to the field a ValidationError
    names, else above the fields after `refusal_prefix`. Never a 500, never a success message.
    """

    refusal_prefix = "Nothing was saved: "

    def get_form(
        self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any
    ) -> type[forms.ModelForm]:
        # A mixin: super() is the ModelAdmin it is mixed into, which mypy cannot know.
        form_class = super().get_form(request, obj, change, **kwargs)  # type: ignore[misc]
        refusal = getattr(request, _REFUSAL, None)
        if refusal is None:
            return form_class
        return _form_with_refusal(form_class, refusal, self.refusal_prefix)

    def changeform_view(
        self,
        request: HttpRequest,
        object_id: str | None = None,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        try:
            return super().changeform_view(  # type: ignore[misc]
                request, object_id, form_url, extra_context
            )
        except (ValidationError, ServiceError) as exc:
            # The view's transaction rolled back: nothing was saved. The same form again,
            # which now carries the service's words (get_form); it does not validate.
            setattr(request, _REFUSAL, exc)
            return super().changeform_view(  # type: ignore[misc]
                request, object_id, form_url, extra_context
            )


class ServiceDeleteMixin:
    """Deleting through a service (`delete_via_service`) on the object's delete page and by
    the list's "delete selected" action alike, whose refusals are shown, never a 500.

    A Forbidden refusal is the admin's 403 page with the service's words, any other refusal
    a message; nothing is deleted (the action is all or none).
    """

    def delete_via_service(self, request: HttpRequest, obj: Any) -> None:
        raise NotImplementedError

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        self.delete_via_service(request, obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        # All or none: a refusal of one rolls back those deleted before it.
        with transaction.atomic():
            for obj in queryset:
                self.delete_via_service(request, obj)

    def delete_view(
        self, request: HttpRequest, object_id: str, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        # A mixin: super() and self are the ModelAdmin it is mixed into (mypy cannot know).
        try:
            return super().delete_view(request, object_id, extra_context)  # type: ignore[misc]
        except ServiceError as exc:
            return self._refused_delete(request, exc, request.path.removesuffix("delete/") or "../")

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        try:
            return super().changelist_view(request, extra_context)  # type: ignore[misc]
        except ServiceError as exc:
            return self._refused_delete(request, exc, request.get_full_path())

    def _refused_delete(self, request: HttpRequest, exc: ServiceError, back: str) -> HttpResponse:
        if isinstance(exc, Forbidden):
            return render_forbidden(request, self, exc.message)  # type: ignore[arg-type]
        messages.error(request, f"Nothing was deleted: {exc.message}")
        return HttpResponseRedirect(back)


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
                created = call_service(form, self.create_via_service, request, form)
            except Forbidden as exc:
                return render_forbidden(request, self, exc.message)
            if not isinstance(created, Refused):
                return created
        fieldsets = [(None, {"fields": list(form.fields)})]
        return render_add_page(
            self, request, form, fieldsets, form_url=form_url, extra_context=extra_context
        )


class OneTimeSecretAddAdmin(ServiceAddAdmin):
    """The add page of a credential (runtime API key, personal access token) whose plaintext
    is shown once: whichever button is used, a successful add answers with the created page."""

    def add_view(
        self, request: HttpRequest, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        only_save = {"show_save_and_add_another": False, "show_save_and_continue": False}
        return super().add_view(request, form_url, {**only_save, **(extra_context or {})})

    def secret_created(
        self,
        request: HttpRequest,
        obj: Any,
        plaintext: str,
        template: str,
        title: str,
        **extra: Any,
    ) -> HttpResponse:
        """Log the addition of `obj` and show `plaintext` on `template`, a 201."""
        self.log_addition(request, obj, [{"added": {}}])
        context = page_context(request, self, title, **extra)
        # Rendered in the POST's own response, not after a redirect: a redirect would
        # need the plaintext stored somewhere (session, message cookie) to show it.
        context["plaintext"] = plaintext
        return TemplateResponse(request, template, context, status=201)


def render_add_page(
    model_admin: admin.ModelAdmin,
    request: HttpRequest,
    form: forms.BaseForm,
    fieldsets: Any,
    *,
    form_url: str = "",
    extra_context: dict[str, Any] | None = None,
    status: int = 200,
) -> HttpResponse:
    """The stock add page around `form`, a form of the service that creates the object
    (not the ModelForm the admin would build), with its errors and refusals."""
    # AdminForm and AdminErrorList take any form; django-stubs says a ModelForm.
    as_model_form = cast("forms.ModelForm[Any]", form)
    admin_form = helpers.AdminForm(
        as_model_form,
        fieldsets,
        model_admin.get_prepopulated_fields(request),
        model_admin=model_admin,
    )
    context = {
        **model_admin.admin_site.each_context(request),
        "title": f"Add {model_admin.opts.verbose_name}",
        "subtitle": None,
        "adminform": admin_form,
        "object_id": None,
        "original": None,
        "is_popup": IS_POPUP_VAR in request.POST or IS_POPUP_VAR in request.GET,
        "to_field": None,
        "media": model_admin.media + admin_form.media,
        "inline_admin_formsets": [],
        "errors": helpers.AdminErrorList(as_model_form, []),
        "preserved_filters": model_admin.get_preserved_filters(request),
        **(extra_context or {}),
    }
    response = model_admin.render_change_form(request, context, add=True, form_url=form_url)
    response.status_code = status
    return response
