"""The admin's add and change pages for governed settings, saved by their services.

Environments, canary policies and evaluation policies keep the stock pages; what
differs is who writes.

Invariants:
- The object is written only by the model's service (`save_via_service`), never by
  ModelAdmin.save_model, so the admin obeys the same rules as the CLI and requests.
- A refusal by the service (ValidationError, Forbidden, Conflict or any ServiceError)
  shows on the form, next to the field it names, with status 200. The change's
  transaction was rolled back, so nothing was saved and no success message is shown.
- A change that the service does not apply at once (lowering required approvals opens a
  request instead) ends with a message that says so, never "changed successfully".
- Nothing is set on the shared ModelAdmin per request: what a request needs to carry
  between the stock view's steps travels on the HttpRequest.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.db import models
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.utils.safestring import SafeString

from agentconfig.core.admin_pages import HistoryAdmin, apply_service_error
from agentconfig.core.errors import ServiceError

# Attributes of the HttpRequest (never of the shared ModelAdmin).
_REFUSAL = "_governed_refusal"
_NOTICE = "_governed_notice"
_NOT_APPLIED = "_governed_not_applied"
# Form fields that say how, not what: never listed as "changed" in the admin's log.
_PROCEDURE_FIELDS = ("reason", "expected_state")


class _Refused(Exception):
    def __init__(self, error: ValidationError | ServiceError) -> None:
        super().__init__(str(error))
        self.error = error


def not_applied(
    request: HttpRequest, notice: str | SafeString, fields: tuple[str, ...] = ()
) -> None:
    """Say that (part of) a change was not applied yet: `notice` replaces the success message."""
    setattr(request, _NOTICE, notice)
    setattr(request, _NOT_APPLIED, fields)


def _with_refusal(
    form_class: type[forms.ModelForm], error: ValidationError | ServiceError
) -> type[forms.ModelForm]:
    # A subclass of a class given at runtime, which mypy cannot follow.
    class RefusedForm(form_class):  # type: ignore[valid-type,misc]
        def clean(self) -> dict[str, Any]:
            cleaned = super().clean()
            if isinstance(error, ValidationError):
                apply_service_error(self, error)
            else:
                self.add_error(None, error.message)
            return cleaned

    RefusedForm.__name__ = form_class.__name__
    return RefusedForm


class GovernedAdmin(HistoryAdmin):
    """Stock add/change pages whose save calls a service; refusals stay on the form."""

    def save_via_service(
        self, request: HttpRequest, form: forms.ModelForm, change: bool
    ) -> models.Model:
        """Call the service with the form's cleaned data; the object it saved."""
        raise NotImplementedError

    def get_form(
        self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any
    ) -> type[forms.ModelForm]:
        form_class = super().get_form(request, obj, change, **kwargs)
        refusal = getattr(request, _REFUSAL, None)
        return form_class if refusal is None else _with_refusal(form_class, refusal)

    def save_form(self, request: HttpRequest, form: forms.ModelForm, change: bool) -> Any:
        form.save(commit=False)  # the stock view calls form.save_m2m() next
        try:
            return self.save_via_service(request, form, change)
        except (ValidationError, ServiceError) as exc:
            raise _Refused(exc) from None

    def save_model(
        self, request: HttpRequest, obj: Any, form: forms.ModelForm, change: bool
    ) -> None:
        pass  # save_via_service saved it

    def changeform_view(
        self,
        request: HttpRequest,
        object_id: str | None = None,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except _Refused as refused:
            # The view's transaction rolled back: nothing was saved. Show the same form
            # again, which now carries the service's words (get_form).
            setattr(request, _REFUSAL, refused.error)
            return super().changeform_view(request, object_id, form_url, extra_context)

    def construct_change_message(
        self, request: HttpRequest, form: forms.ModelForm, formsets: Any, add: bool = False
    ) -> list[dict[str, Any]]:
        if add:
            return [{"added": {}}]
        skip = {*_PROCEDURE_FIELDS, *getattr(request, _NOT_APPLIED, ())}
        labels = [
            str(form.fields[name].label or name) for name in form.changed_data if name not in skip
        ]
        return [{"changed": {"fields": labels}}] if labels else []

    def response_change(self, request: HttpRequest, obj: Any) -> HttpResponse:
        notice = getattr(request, _NOTICE, None)
        if notice is None:
            return super().response_change(request, obj)
        messages.warning(request, notice)
        opts = self.opts
        return HttpResponseRedirect(
            reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[obj.pk])
        )

    # Deleting would change what governs releases without a reason or an audit record.
    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
