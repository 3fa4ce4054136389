"""Admin for runtime API keys (deployments.models.api_keys).

Invariants:
- An API key is created by deployments.services.api_keys.create_api_key; its plaintext is shown
  once, in the response to the POST that created it, and stored nowhere (not in the
  session, not in a message cookie). key_hash is never displayed.
- Keys are created and revoked with a reason (deployments.services.api_keys.revoke_api_key),
  never deleted or edited.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, reverse

from agentconfig.core.actors import Actor
from agentconfig.core.admin_pages import (
    ChangePageMixin,
    HistoryAdmin,
    OneTimeSecretAddAdmin,
    apply_service_error,
    page_context,
    page_path,
    refusals_as_pages,
    text_column,
)
from agentconfig.core.errors import Conflict, Forbidden
from deployments.forms import ApiKeyAddForm, ApiKeyRevokeForm
from deployments.models import ApiKey
from deployments.services.api_keys import create_api_key, revoke_api_key

REVOKE_PERMISSION = "deployments.change_apikey"


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
class ApiKeyAdmin(ChangePageMixin, OneTimeSecretAddAdmin, HistoryAdmin):
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
        return self.secret_created(
            request,
            key,
            plaintext,
            "admin/deployments/apikey/created.html",
            f"API key {key.name} created",
            key=key,
            scope=self.scope(key),
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

    def change_page_context(self, request: HttpRequest, obj: ApiKey) -> dict[str, Any]:
        return {"can_revoke": self.has_revoke_permission(request)}

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
