"""Admin for versions: read-only version pages and the "New version" page of an agent.

Invariants:
- Nothing here adds, changes or deletes a version row directly: the version admin grants
  view only, and the New version page calls versions.services.create_version.
- Prompts and guardrails are shown escaped, with their whitespace preserved.
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.utils.html import format_html
from django.utils.safestring import SafeString

from agentconfig.actors import Actor
from agentconfig.admin_views import (
    apply_service_error,
    get_agent_for_page,
    page_context,
    refusals_as_pages,
    text_column,
)
from agentconfig.errors import Forbidden, ServiceError
from deployments.models import Pointer
from versions.forms import NewVersionForm, pretty_json
from versions.models import AgentVersion, Source
from versions.selectors import get_latest_version
from versions.services import create_version

ADD_VERSION_PERMISSION = "versions.add_agentversion"


@admin.register(AgentVersion)
class AgentVersionAdmin(admin.ModelAdmin):
    list_display = (
        "agent",
        "version_label",
        "created_at",
        "author",
        "source",
        "short_hash",
        "change_summary",
    )
    list_display_links = ("version_label",)
    list_filter = ("agent", "source")
    search_fields = ("agent__slug", "change_description", "config_hash")
    list_select_related = ("agent",)
    view_on_site = False  # get_absolute_url is this very page
    fieldsets = (
        (
            None,
            {
                "fields": (
                    "agent",
                    "version_number",
                    "change_description",
                    "created_at",
                    "author",
                    "source",
                    "source_path",
                    "derived_from",
                    "active_in",
                )
            },
        ),
        (
            "Configuration",
            {
                "fields": (
                    "model",
                    "temperature",
                    "max_tokens",
                    "tools_display",
                    "guardrails_display",
                    "prompt_display",
                )
            },
        ),
        ("Integrity", {"fields": ("config_hash",)}),
    )
    readonly_fields = tuple(name for _, options in fieldsets for name in options["fields"])

    # Versions are append-only: view permission is all anyone gets here.
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: AgentVersion | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: AgentVersion | None = None) -> bool:
        return False

    def get_queryset(self, request: HttpRequest) -> QuerySet[AgentVersion]:
        return super().get_queryset(request).select_related("agent", "derived_from__agent")

    author = text_column("created_by_label", "created by")

    @admin.display(description="version", ordering="version_number")
    def version_label(self, obj: AgentVersion) -> str:
        return obj.label

    @admin.display(description="config hash")
    def short_hash(self, obj: AgentVersion) -> str:
        return obj.config_hash[:12]

    @admin.display(description="change description")
    def change_summary(self, obj: AgentVersion) -> str:
        text = obj.change_description
        return text if len(text) <= 80 else f"{text[:79]}…"

    @admin.display(description="tools")
    def tools_display(self, obj: AgentVersion) -> str:
        return ", ".join(obj.tools) or "(none)"

    @admin.display(description="guardrails")
    def guardrails_display(self, obj: AgentVersion) -> SafeString:
        return format_html('<pre class="ac-text">{}</pre>', pretty_json(obj.guardrails))

    @admin.display(description="system prompt")
    def prompt_display(self, obj: AgentVersion) -> SafeString:
        return format_html('<pre class="ac-text ac-prompt">{}</pre>', obj.system_prompt)

    @admin.display(description="active in")
    def active_in(self, obj: AgentVersion) -> str:
        slugs = Pointer.objects.filter(stable_version=obj).values_list(
            "environment__slug", flat=True
        )
        return ", ".join(slugs) or "not active in any environment"


@refusals_as_pages
def new_version_view(
    model_admin: admin.ModelAdmin, request: HttpRequest, object_id: str
) -> HttpResponse:
    """Create the agent's next version from a form prefilled with its latest version."""
    agent = get_agent_for_page(model_admin, request, object_id)
    Actor.of(request.user).require(ADD_VERSION_PERMISSION, "create versions")
    latest = get_latest_version(agent)
    status = 200
    if request.method == "POST":
        form = NewVersionForm(request.POST, agent=agent)
        if form.is_valid():
            derived_from = form.cleaned_data["derived_from"]
            try:
                version = create_version(
                    agent=agent,
                    actor=Actor.of(request.user),
                    config=form.config(),
                    change_description=form.cleaned_data["change_description"],
                    source=Source.BROWSER,
                    derived_from=derived_from,
                )
            except ValidationError as exc:
                apply_service_error(form, exc)
            except Forbidden:
                raise
            except ServiceError as exc:
                form.add_error(None, exc.message)
                status = exc.http_status
            else:
                messages.success(
                    request,
                    f"Created {agent.slug} {version.label}. It is not active in any environment "
                    "until you deploy it.",
                )
                if derived_from is not None and version.version_number != (
                    derived_from.version_number + 1
                ):
                    messages.warning(
                        request,
                        f"{version.label} is based on {derived_from.label}, but "
                        f"v{version.version_number - 1} was created while you were editing; "
                        f"compare them before you deploy {version.label}.",
                    )
                return redirect("admin:agentconfig_agent_change", agent.pk)
    else:
        form = NewVersionForm(initial=NewVersionForm.initial_from(latest), agent=agent)
    context = page_context(
        request,
        model_admin,
        f"New version of {agent.slug}",
        agent=agent,
        form=form,
        latest=latest,
        next_number=(latest.version_number + 1) if latest else 1,
    )
    return TemplateResponse(
        request, "admin/agentconfig/agent/new_version.html", context, status=status
    )
