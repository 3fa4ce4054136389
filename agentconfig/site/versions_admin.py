"""Admin for versions: read-only version pages, their compare pages and "New version".

The compare pages (/admin/versions/agentversion/compare/<agent>/<a>...<b>/) live in
agentconfig.site.compare_views; their URLs are added by AgentVersionAdmin.get_urls.

Git (README, "Git as the source of truth"): a version page shows where the version came
from (commit, author, date, message, file), marks an agent edited outside git since its
last version in git (versions.selectors.get_drift) and links `…/<id>/download.yaml`, the
version as an agent file to commit; the version list has a "git" column and filter.

Invariants:
- Nothing here adds, changes or deletes a version row directly: the version admin grants
  view only, and the New version page calls versions.services.create_version.
- Prompts and guardrails are shown escaped, with their whitespace preserved.
- The YAML download needs the view permission on versions, like the version page.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, cast

from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.db.models import F, OuterRef, QuerySet, Subquery
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString

from agentconfig.core.actors import Actor
from agentconfig.core.admin_pages import (
    ChangePageMixin,
    ReadOnlyAdminMixin,
    Refused,
    call_service,
    get_agent_for_page,
    page_context,
    page_path,
    refusals_as_pages,
    render_forbidden,
    text_column,
)
from agentconfig.site import compare_views
from deployments.diff_context import compare_url_for
from deployments.models import Pointer
from versions.export import render_agent_file
from versions.forms import NewVersionForm, pretty_json
from versions.models import AgentVersion, Source
from versions.selectors import IN_GIT, get_drift, get_latest_version
from versions.services import create_version

if TYPE_CHECKING:
    # The stubs' names for what these admin hooks return (private, types only).
    from django.contrib.admin.options import _FieldOpts, _FieldsetSpec
    from django.utils.functional import _StrOrPromise

ADD_VERSION_PERMISSION = "versions.add_agentversion"


class GitFilter(admin.SimpleListFilter):
    """Versions by their relation to git (uses AgentVersionAdmin's annotation)."""

    title = "git"
    parameter_name = "git"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [
            ("from_git", "Made from git"),
            ("in_git", "In git (made from git or confirmed)"),
            ("outside_git", "Edited outside git"),
            ("never", "Agent never synced from git"),
        ]

    def queryset(
        self, request: HttpRequest, queryset: QuerySet[AgentVersion]
    ) -> QuerySet[AgentVersion]:
        value = self.value()
        if value == "from_git":
            return queryset.filter(source=Source.GIT)
        if value == "in_git":
            return queryset.filter(IN_GIT)
        if value == "outside_git":
            return queryset.filter(version_number__gt=F("agent_in_git_number"))
        if value == "never":
            # The annotation comes from VersionAdmin.get_queryset, which the plugin cannot see.
            return queryset.filter(agent_in_git_number__isnull=True)  # type: ignore[misc]
        return queryset


GIT_FIELDS = (
    "source_commit",
    "source_commit_author",
    "source_commit_time",
    "commit_message_display",
)


# Versions are append-only (ReadOnlyAdminMixin): view permission is all anyone gets here.
@admin.register(AgentVersion)
class AgentVersionAdmin(ChangePageMixin, ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = (
        "agent",
        "version_label",
        "created_at",
        "author",
        "source",
        "git_status",
        "short_hash",
        "change_summary",
        "changes_link",
    )
    list_display_links = ("version_label",)
    list_filter = ("agent", "source", GitFilter)
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
                    "git_drift",
                    "agent_file",
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
    readonly_fields = (
        # These fieldsets name single fields, never a row of them.
        *cast("Iterator[str]", (name for _, options in fieldsets for name in options["fields"])),
        *GIT_FIELDS,
        "confirmation_display",
    )

    def get_queryset(self, request: HttpRequest) -> QuerySet[AgentVersion]:
        # The number of the agent's newest version in git, per row: a version above it
        # was edited outside git. One subquery, so the list costs the same per page.
        in_git = AgentVersion.objects.filter(agent=OuterRef("agent")).filter(IN_GIT)
        return (
            super()
            .get_queryset(request)
            .select_related("agent", "derived_from__agent", "git_confirmation")
            .annotate(
                agent_in_git_number=Subquery(
                    in_git.order_by("-version_number").values("version_number")[:1]
                )
            )
        )

    def get_fieldsets(self, request: HttpRequest, obj: AgentVersion | None = None) -> _FieldsetSpec:
        fieldsets: list[tuple[_StrOrPromise | None, _FieldOpts]] = list(self.fieldsets or ())
        if obj is not None and obj.source == Source.GIT:
            fieldsets.insert(1, ("Git", {"fields": GIT_FIELDS}))
        elif obj is not None and hasattr(obj, "git_confirmation"):
            fieldsets.insert(1, ("Git", {"fields": ("confirmation_display",)}))
        return fieldsets

    def download_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """The version as an agent file (`<slug>.yaml`), to commit to the repository."""
        version = self.get_object(request, unquote(object_id))
        if version is None:
            raise Http404(f"There is no version with id {object_id!r}.")
        if not self.has_view_permission(request, version):
            return render_forbidden(
                request,
                self,
                f"{request.user.get_username()} may not view versions: downloading one needs "
                "the permission 'versions.view_agentversion'. Ask an administrator to grant it.",
            )
        response = HttpResponse(
            render_agent_file(version), content_type="application/yaml; charset=utf-8"
        )
        # The slug is [a-z0-9-] only (agentconfig.models.SLUG_PATTERN): safe in the header.
        response["Content-Disposition"] = f'attachment; filename="{version.agent.slug}.yaml"'
        return response

    author = text_column("created_by_label", "created by")

    @admin.display(description="version", ordering="version_number")
    def version_label(self, obj: AgentVersion) -> str:
        return obj.label

    @admin.display(description="git")
    def git_status(self, obj: AgentVersion) -> SafeString | str:
        if obj.source == Source.GIT:
            return format_html('<code title="{}">{}</code>', obj.source_commit, obj.short_commit)
        confirmation = getattr(obj, "git_confirmation", None)
        if confirmation is not None:
            return format_html(
                'in git at <code title="{}">{}</code>',
                confirmation.source_commit,
                confirmation.short_commit,
            )
        in_git_number = getattr(obj, "agent_in_git_number", None)
        if in_git_number is not None and obj.version_number > in_git_number:
            return format_html(
                '<span class="{}">edited outside git</span>', "ac-badge ac-badge-changed"
            )
        return ""

    @admin.display(description="git")
    def git_drift(self, obj: AgentVersion) -> SafeString | str:
        drift = get_drift(obj.agent)
        if drift is None:
            return "—"
        download = reverse("admin:versions_agentversion_download", args=[drift.latest.pk])
        return format_html(
            '<span class="ac-badge ac-badge-changed">edited outside git</span> {} '
            '<a href="{}" download>Download {} ({})</a> and commit it to {}.',
            drift.describe(),
            download,
            f"{obj.agent.slug}.yaml",
            drift.latest.label,
            drift.path,
        )

    @admin.display(description="agent file")
    def agent_file(self, obj: AgentVersion) -> SafeString:
        return format_html(
            '<a href="{}" download>Download {}.yaml</a> (this version, in the format '
            "sync_agents reads)",
            reverse("admin:versions_agentversion_download", args=[obj.pk]),
            obj.agent.slug,
        )

    @admin.display(description="commit message")
    def commit_message_display(self, obj: AgentVersion) -> SafeString:
        return format_html('<pre class="ac-text">{}</pre>', obj.source_commit_message)

    @admin.display(description="in git")
    def confirmation_display(self, obj: AgentVersion) -> SafeString | str:
        confirmation = getattr(obj, "git_confirmation", None)
        if confirmation is None:
            return ""
        return format_html(
            "Made outside git; a sync later found exactly this configuration in {} at commit "
            '<code>{}</code> ({}, {}): <pre class="ac-text">{}</pre>',
            confirmation.source_path,
            confirmation.source_commit,
            confirmation.source_commit_author,
            confirmation.source_commit_time,
            confirmation.source_commit_message,
        )

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

    @admin.display(description="changes")
    def changes_link(self, obj: AgentVersion) -> SafeString | str:
        previous = obj.derived_from
        if previous is None and obj.version_number == 1:
            return "first version"
        label = previous.label if previous else f"v{obj.version_number - 1}"
        return format_html(
            '<a href="{}">{} → {}</a>',
            compare_url_for(obj.agent, "previous", str(obj.version_number)),
            label,
            obj.label,
        )

    def get_urls(self) -> list[URLPattern]:
        # Before the stock URLs: their "<path:object_id>/" would swallow "compare/...".
        return [
            page_path(
                self,
                "compare/<slug:agent_slug>/<str:spec>/",
                compare_views.compare_view,
                "versions_agentversion_compare",
            ),
            page_path(
                self,
                "compare/<slug:agent_slug>/",
                compare_views.compare_pick_view,
                "versions_agentversion_compare_pick",
            ),
            page_path(
                self,
                "<path:object_id>/download.yaml",
                AgentVersionAdmin.download_view,
                "versions_agentversion_download",
            ),
            *super().get_urls(),
        ]

    def change_page_context(self, request: HttpRequest, version: AgentVersion) -> dict[str, Any]:
        return compare_views.version_page_links(version)

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        picker = compare_views.compare_picker(request.GET.get("agent__id__exact"))
        return super().changelist_view(request, {**(extra_context or {}), "compare_picker": picker})


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
            version = call_service(
                form,
                create_version,
                agent=agent,
                actor=Actor.of(request.user),
                config=form.config(),
                change_description=form.cleaned_data["change_description"],
                source=Source.BROWSER,
                derived_from=derived_from,
            )
            if isinstance(version, Refused):
                status = version.status
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
