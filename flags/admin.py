"""Admin for flags and tool gates.

Invariants:
- Nothing here writes a flag, a state or a gate directly: the add page, the change form,
  delete, and the pages under a flag (rules, turn on, kill switch) call flags.services.flags,
  which checks permissions, validates, records history and invalidates the runtime cache.
- A refusal is shown, never a success message for something that was not saved.
- Per-environment state is shown for every environment, including ones added after the
  flag (no state row yet: off).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django import forms
from django.contrib import admin, messages
from django.db.models import Prefetch, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import URLPattern, reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from agentconfig.core.actors import Actor
from agentconfig.core.admin_pages import (
    ChangePageMixin,
    HistoryAdmin,
    ServiceAddAdmin,
    ServiceChangeMixin,
    ServiceDeleteMixin,
    page_path,
    text_column,
)
from deployments.models import Environment
from flags import admin_views as flag_pages
from flags.approvals import KILL_SWITCH_PERMISSION, ApprovalRequired
from flags.forms import FlagAddForm, FlagChangeForm, FlagVariantsChangeForm, ToolGateAddForm
from flags.models import Flag, FlagEnvironment, FlagKind, ToolGate
from flags.selectors import list_flag_changes
from flags.services.flags import (
    CHANGE_PERMISSION,
    create_flag,
    create_tool_gate,
    delete_flag,
    delete_tool_gate,
    update_flag,
)

if TYPE_CHECKING:
    # The stubs' names for what these admin hooks return (private, types only).
    from django.contrib.admin.options import _FieldGroups

CHANGES_SHOWN = 50


@dataclass(frozen=True)
class EnvironmentRow:
    environment: Environment
    state: FlagEnvironment | None
    default_variant: str
    off_variant: str

    @property
    def enabled(self) -> bool:
        return bool(self.state and self.state.enabled)

    @property
    def rule_count(self) -> int:
        return len(self.state.rules) if self.state else 0


class ServiceDeletedAdmin(ServiceDeleteMixin, ServiceAddAdmin, HistoryAdmin):
    """Created and deleted by services (admin_pages: a refusal deletes nothing and is shown)."""


@admin.register(Flag)
class FlagAdmin(ChangePageMixin, ServiceChangeMixin, ServiceDeletedAdmin):
    add_form = FlagAddForm
    list_display = ("key", "kind", "scope", "environments", "owner", "updated_at")
    list_filter = ("kind", ("agent", admin.RelatedOnlyFieldListFilter))
    search_fields = ("key", "description", "owner")
    view_on_site = False  # get_absolute_url is this very page
    created_by = text_column("created_by_label", "created by")

    def get_queryset(self, request: HttpRequest) -> QuerySet[Flag]:
        # One query for every listed flag's states, whatever the page size.
        states = FlagEnvironment.objects.select_related("environment").order_by(
            "environment__position", "environment__slug"
        )
        return (
            super()
            .get_queryset(request)
            .select_related("agent")
            .prefetch_related(Prefetch("states", queryset=states))
        )

    def get_form(
        self, request: HttpRequest, obj: Flag | None = None, change: bool = False, **kwargs: Any
    ) -> type[forms.ModelForm]:
        has_variants = obj is not None and obj.kind != FlagKind.BOOLEAN
        kwargs["form"] = FlagVariantsChangeForm if has_variants else FlagChangeForm
        return super().get_form(request, obj, change=change, **kwargs)

    def get_fields(self, request: HttpRequest, obj: Flag | None = None) -> _FieldGroups:
        variants = (
            "variants" if obj is not None and obj.kind != FlagKind.BOOLEAN else "variant_list"
        )
        return [
            "key",
            "kind",
            "scope",
            "description",
            "owner",
            variants,
            "created_at",
            "created_by",
            "updated_at",
        ]

    def get_readonly_fields(self, request: HttpRequest, obj: Flag | None = None) -> tuple[str, ...]:
        # Key, kind and scope are fixed once created (rules and gates were checked against them).
        return ("key", "kind", "scope", "variant_list", "created_at", "created_by", "updated_at")

    @admin.display(description="scope", ordering="agent__slug")
    def scope(self, obj: Flag) -> str:
        return obj.scope_label

    @admin.display(description="variants")
    def variant_list(self, obj: Flag) -> SafeString:
        return format_html_join(
            ", ",
            "<code>{}</code> = <code>{}</code>",
            ((v["name"], json.dumps(v["value"], ensure_ascii=False)) for v in obj.variants),
        )

    @admin.display(description="environments")
    def environments(self, obj: Flag) -> SafeString | str:
        states = obj.states.all()
        if not states:
            return "off everywhere"
        return format_html_join(
            " ",
            "<span class='ac-flag-state ac-flag-{}'>{}: {}</span>",
            (
                ("on" if s.enabled else "off", s.environment.slug, "on" if s.enabled else "off")
                for s in states
            ),
        )

    # --- writes through the services ---------------------------------------------------

    def create_via_service(self, request: HttpRequest, form: forms.BaseForm) -> HttpResponse:
        data = form.cleaned_data
        flag = create_flag(
            key=data["key"],
            kind=data["kind"],
            agent=data["agent"],
            description=data["description"],
            owner=data["owner"],
            variants=data["variants"],
            actor=Actor.of(request.user),
        )
        self.log_addition(request, flag, [{"added": {}}])
        messages.success(
            request,
            f"Created {flag.key}; it is off in every environment. Set its rules and turn it on "
            "per environment below.",
        )
        return HttpResponseRedirect(reverse("admin:flags_flag_change", args=[flag.pk]))

    def save_model(
        self, request: HttpRequest, obj: Flag, form: forms.BaseForm, change: bool
    ) -> None:
        # A refusal (a ValidationError only after a race with another editor: the form
        # checked the same rules) is shown on the form by ServiceChangeMixin.
        data = form.cleaned_data
        update_flag(
            flag=Flag.objects.get(pk=obj.pk),
            actor=Actor.of(request.user),
            description=data["description"],
            owner=data["owner"],
            variants=data.get("variants"),
        )

    def delete_via_service(self, request: HttpRequest, obj: Flag) -> None:
        delete_flag(flag=obj, actor=Actor.of(request.user))

    # --- the flag page -------------------------------------------------------------------

    def get_urls(self) -> list[URLPattern]:
        environment = "<path:object_id>/environments/<slug:environment>"
        return [
            page_path(self, f"{environment}/rules/", flag_pages.rules_view, "flags_flag_rules"),
            page_path(self, f"{environment}/enable/", flag_pages.enable_view, "flags_flag_enable"),
            page_path(self, f"{environment}/kill/", flag_pages.kill_view, "flags_flag_kill"),
            page_path(
                self, "<path:object_id>/evaluate/", flag_pages.evaluate_view, "flags_flag_evaluate"
            ),
            *super().get_urls(),
        ]

    def change_page_context(self, request: HttpRequest, flag: Flag) -> dict[str, Any]:
        """Each environment's state, the gated tools and the latest changes, for the flag page."""
        states = {s.environment_id: s for s in flag.states.all()}
        default_variant, off_variant = flag.initial_variants
        environments = [
            EnvironmentRow(
                environment=env,
                state=states.get(env.pk),
                default_variant=states[env.pk].default_variant
                if env.pk in states
                else default_variant,
                off_variant=states[env.pk].off_variant if env.pk in states else off_variant,
            )
            for env in Environment.objects.all()
        ]
        user = request.user
        return {
            "show_overview": True,
            "environment_rows": environments,
            "tool_gates": list(flag.tool_gates.select_related("agent")),
            "changes": list_flag_changes(flag, limit=CHANGES_SHOWN),
            "changes_shown": CHANGES_SHOWN,
            "can_change_rules": user.has_perm(CHANGE_PERMISSION),
            "can_kill": user.has_perm(KILL_SWITCH_PERMISSION),
            "can_add_gate": user.has_perm("flags.add_toolgate"),
        }


@admin.register(ToolGate)
class ToolGateAdmin(ServiceDeletedAdmin):
    add_form = ToolGateAddForm
    list_display = ("agent", "tool_name", "flag_link", "created_at", "created_by")
    list_filter = (("agent", admin.RelatedOnlyFieldListFilter),)
    search_fields = ("tool_name", "agent__slug", "flag__key")
    list_select_related = ("agent", "flag")
    fields = ("agent", "tool_name", "flag_link", "created_at", "created_by")
    readonly_fields = fields
    created_by = text_column("created_by_label", "created by")

    # A gate is created and removed, never edited: remove it and add another.
    def has_change_permission(self, request: HttpRequest, obj: ToolGate | None = None) -> bool:
        return False

    @admin.display(description="flag", ordering="flag__key")
    def flag_link(self, obj: ToolGate) -> SafeString:
        url = reverse("admin:flags_flag_change", args=[obj.flag_id])
        return format_html('<a href="{}">{}</a>', url, obj.flag.key)

    def create_via_service(self, request: HttpRequest, form: forms.BaseForm) -> HttpResponse:
        data = dict(form.cleaned_data)
        reason = data.pop("reason", "")
        try:
            gate = create_tool_gate(actor=Actor.of(request.user), reason=reason, **data)
        except ApprovalRequired as exc:
            # A gate changes every environment's tools: where one needs approval, the
            # gate is proposed as a change request instead (ValidationError without reason).
            return flag_pages.propose_instead(request, exc, reason)
        self.log_addition(request, gate, [{"added": {}}])
        messages.success(
            request,
            f"{gate.agent.slug} now serves {gate.tool_name} only to users for whom "
            f"{gate.flag.key} is on.",
        )
        return HttpResponseRedirect(reverse("admin:flags_toolgate_changelist"))

    def delete_via_service(self, request: HttpRequest, obj: ToolGate) -> None:
        delete_tool_gate(gate=obj, actor=Actor.of(request.user))
