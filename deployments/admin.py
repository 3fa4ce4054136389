"""Admin for environments, pointers, the release log and API keys.

Invariants:
- Pointers and release-log rows are never written here: pointers move only through the
  Deploy… and Roll back… pages of an agent, which call deployments.services.
- An API key is created by deployments.services.create_api_key; its plaintext is shown
  once, in the response to the POST that created it, and stored nowhere (not in the
  session, not in a message cookie). key_hash is never displayed.
- Keys are revoked (deployments.services.revoke_api_key), never deleted or edited.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString

from agentconfig.actors import Actor
from agentconfig.admin_views import (
    HistoryAdmin,
    ServiceAddAdmin,
    page_context,
    render_forbidden,
    text_column,
)
from agentconfig.errors import Conflict, Forbidden
from deployments.forms import ApiKeyAddForm
from deployments.models import ApiKey, Environment, Pointer, ReleaseLogEntry
from deployments.services import create_api_key, revoke_api_key
from versions.models import AgentVersion

REVOKE_PERMISSION = "deployments.change_apikey"
# Version rows carry whole prompts; lists of pointers and log entries need only their numbers.
VERSION_TEXT_COLUMNS = ("system_prompt", "guardrails")


def _version_link(version: AgentVersion | None) -> SafeString | str:
    if version is None:
        return "—"
    url = reverse("admin:versions_agentversion_change", args=[version.pk])
    return format_html('<a href="{}">{}</a>', url, version.label)


def _without_version_text(queryset: QuerySet[Any], *relations: str) -> QuerySet[Any]:
    return queryset.select_related(*relations).defer(
        *(f"{relation}__{column}" for relation in relations for column in VERSION_TEXT_COLUMNS)
    )


@admin.register(Environment)
class EnvironmentAdmin(HistoryAdmin):
    list_display = ("slug", "name", "position", "created_at")
    list_display_links = ("slug", "name")
    search_fields = ("slug", "name")
    fields = ("slug", "name", "position", "created_at")

    def get_readonly_fields(
        self, request: HttpRequest, obj: Environment | None = None
    ) -> tuple[str, ...]:
        # API requests, CLI scripts and pipelines name environments by slug.
        return ("slug", "created_at") if obj is not None else ("created_at",)


@admin.register(Pointer)
class PointerAdmin(HistoryAdmin):
    list_display = ("agent", "environment", "active_version", "updated_at", "updated_by")
    list_filter = ("environment", "agent")
    search_fields = ("agent__slug",)
    fields = ("agent", "environment", "stable_version", "updated_at", "updated_by")
    readonly_fields = fields
    updated_by = text_column("updated_by_label", "updated by")

    # A pointer moves only through deploy/rollback, which write the release log.
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Pointer | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Pointer | None = None) -> bool:
        return False

    def get_queryset(self, request: HttpRequest) -> QuerySet[Pointer]:
        return _without_version_text(
            super().get_queryset(request).select_related("agent", "environment"),
            "stable_version",
        )

    @admin.display(description="active version", ordering="stable_version__version_number")
    def active_version(self, obj: Pointer) -> SafeString | str:
        return _version_link(obj.stable_version)


@admin.register(ReleaseLogEntry)
class ReleaseLogEntryAdmin(admin.ModelAdmin):
    list_display = (
        "created_at",
        "agent",
        "environment",
        "kind",
        "from_link",
        "to_link",
        "by",
        "reason_summary",
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
    )
    readonly_fields = fields
    by = text_column("actor_label", "by")

    # The release log is append-only; rows come from the deploy and rollback services.
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(
        self, request: HttpRequest, obj: ReleaseLogEntry | None = None
    ) -> bool:
        return False

    def has_delete_permission(
        self, request: HttpRequest, obj: ReleaseLogEntry | None = None
    ) -> bool:
        return False

    def get_queryset(self, request: HttpRequest) -> QuerySet[ReleaseLogEntry]:
        return _without_version_text(
            super().get_queryset(request).select_related("agent", "environment", "actor"),
            "from_version",
            "to_version",
        )

    @admin.display(description="from")
    def from_link(self, obj: ReleaseLogEntry) -> SafeString | str:
        return _version_link(obj.from_version)

    @admin.display(description="to")
    def to_link(self, obj: ReleaseLogEntry) -> SafeString | str:
        return _version_link(obj.to_version)

    @admin.display(description="reason")
    def reason_summary(self, obj: ReleaseLogEntry) -> str:
        return obj.reason if len(obj.reason) <= 80 else f"{obj.reason[:79]}…"


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
        )
        self.log_addition(request, key, [{"added": {}}])
        context = page_context(request, self, f"API key {key.name} created", key=key)
        # Rendered in the POST's own response, not after a redirect: a redirect would
        # need the plaintext stored somewhere (session, message cookie) to show it.
        context["plaintext"] = plaintext
        return TemplateResponse(
            request, "admin/deployments/apikey/created.html", context, status=201
        )

    def get_urls(self) -> list[URLPattern]:
        return [
            path(
                "<path:object_id>/revoke/",
                self.admin_site.admin_view(self.revoke_view),
                name="deployments_apikey_revoke",
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

    def revoke_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """Confirm on GET, revoke on POST through deployments.services.revoke_api_key."""
        key = self.get_object(request, unquote(object_id))
        if key is None:
            raise Http404(f"There is no API key with id {object_id!r}.")
        change_url = reverse("admin:deployments_apikey_change", args=[key.pk])
        try:
            Actor.of(request.user).require(REVOKE_PERMISSION, "revoke API keys")
            if request.method == "POST":
                revoke_api_key(key=key, actor=Actor.of(request.user))
                messages.success(
                    request,
                    f"Revoked API key {key.name!r}: runtimes presenting it are now refused.",
                )
                return HttpResponseRedirect(change_url)
        except Forbidden as exc:
            return render_forbidden(request, self, exc.message)
        except Conflict as exc:
            messages.error(request, exc.message)
            return HttpResponseRedirect(change_url)
        context = page_context(request, self, f"Revoke API key {key.name}?", key=key)
        return TemplateResponse(
            request, "admin/deployments/apikey/revoke_confirmation.html", context
        )

    @admin.action(description="Revoke selected API keys…", permissions=["revoke"])
    def revoke_selected(
        self, request: HttpRequest, queryset: QuerySet[ApiKey]
    ) -> TemplateResponse | None:
        """Django's delete-selected pattern: a confirmation page, then revoke each key."""
        keys = list(queryset.select_related("environment"))
        if request.POST.get("post") != "yes":
            context = page_context(
                request,
                self,
                "Revoke API keys?",
                keys=keys,
                active_keys=[key for key in keys if key.is_active],
                action_checkbox_name=admin.helpers.ACTION_CHECKBOX_NAME,
            )
            return TemplateResponse(
                request, "admin/deployments/apikey/revoke_selected_confirmation.html", context
            )
        actor = Actor.of(request.user)
        revoked: list[str] = []
        for key in keys:
            try:
                revoke_api_key(key=key, actor=actor)
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
