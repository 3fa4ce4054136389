"""The admin's add and change pages for governed settings, saved by their services.

Environments, canary policies and evaluation policies keep the stock pages; what
differs is who writes.

Invariants:
- The object is written only by the model's service (`save_via_service`), never by
  ModelAdmin.save_model, so the admin obeys the same rules as the CLI and requests.
- A refusal by the service (ValidationError, Forbidden, Conflict or any ServiceError)
  shows on the form, next to the field it names, with status 200
  (agentconfig.core.admin_pages.ServiceChangeMixin). The change's transaction was rolled
  back, so nothing was saved and no success message is shown.
- A change that the service does not apply at once (lowering required approvals opens a
  request instead) ends with a message that says so, never "changed successfully".
- Nothing is set on the shared ModelAdmin per request: what a request needs to carry
  between the stock view's steps travels on the HttpRequest.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import messages
from django.db import models
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.utils.safestring import SafeString

from agentconfig.core.actors import Actor
from agentconfig.core.admin_pages import HistoryAdmin, ServiceChangeMixin
from deployments.models import Environment
from deployments.services.environments import NO_POLICY_STATE

# Attributes of the HttpRequest (never of the shared ModelAdmin).
_NOTICE = "_governed_notice"
_NOT_APPLIED = "_governed_not_applied"
# Form fields that say how, not what: never listed as "changed" in the admin's log.
_PROCEDURE_FIELDS = ("reason", "expected_state")


def not_applied(
    request: HttpRequest, notice: str | SafeString, fields: tuple[str, ...] = ()
) -> None:
    """Say that (part of) a change was not applied yet: `notice` replaces the success message."""
    setattr(request, _NOTICE, notice)
    setattr(request, _NOT_APPLIED, fields)


class GovernedAdmin(ServiceChangeMixin, HistoryAdmin):
    """Stock add/change pages whose save calls a service; refusals stay on the form
    (ServiceChangeMixin), in the service's words."""

    refusal_prefix = ""

    def save_via_service(
        self, request: HttpRequest, form: forms.ModelForm, change: bool
    ) -> models.Model:
        """Call the service with the form's cleaned data; the object it saved."""
        raise NotImplementedError

    def save_form(self, request: HttpRequest, form: forms.ModelForm, change: bool) -> Any:
        form.save(commit=False)  # the stock view calls form.save_m2m() next
        return self.save_via_service(request, form, change)

    def save_model(
        self, request: HttpRequest, obj: Any, form: forms.ModelForm, change: bool
    ) -> None:
        pass  # save_via_service saved it

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


class EnvironmentPolicyAdmin(GovernedAdmin):
    """The admin of a policy each environment has one of (canary, evaluation): the
    environment is fixed once saved, and `set_policy` (the policy's service) saves
    `policy_fields` with a reason."""

    policy_fields: tuple[str, ...] = ()

    def set_policy(
        self,
        *,
        environment: Environment,
        values: dict[str, Any],
        actor: Actor,
        reason: str,
        expected_state: str | None,
    ) -> models.Model:
        raise NotImplementedError

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        # A policy belongs to its environment; another environment gets its own policy.
        return ("environment",) if obj is not None else ()

    def save_via_service(
        self, request: HttpRequest, form: forms.ModelForm, change: bool
    ) -> models.Model:
        data = form.cleaned_data
        return self.set_policy(
            environment=form.instance.environment if change else data["environment"],
            values={field: data[field] for field in self.policy_fields},
            actor=Actor.of(request.user),
            reason=data["reason"],
            # An add page saw no policy: one saved meanwhile is not overwritten.
            expected_state=data["expected_state"] or (None if change else NO_POLICY_STATE),
        )
