"""AgentVersion: one immutable snapshot of an agent's configuration.

Invariants:
- Append-only (see agentconfig.core.append_only): never updated or deleted, by the ORM,
  a queryset, the admin or, on PostgreSQL, any SQL client.
- version_number is 1, 2, 3, ... per agent with no gap and no duplicate: assigned by
  versions.services.create_version under a lock on the agent row, backed by a unique
  constraint.
- config_hash is the SHA-256 of the canonical JSON of the six configuration fields.
- A version made from git (source "git") records its commit (40 hex digits), the
  commit's author, time and message; no other version has a commit (a check constraint).
- GitConfirmation is append-only too, and at most one exists per version: "a git sync
  found exactly this configuration at this commit" (see versions.git_sync).
"""

import uuid
from typing import Any

from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone

from agentconfig.core.append_only import AppendOnlyModel
from agentconfig.core.versioning import version_number_constraints
from agentconfig.models import Agent, person_field
from versions.config import CONFIG_FIELDS, MAX_TEMPERATURE, MIN_TEMPERATURE


class Source(models.TextChoices):
    BROWSER = "browser", "Browser"
    FILE_IMPORT = "file_import", "File import"
    CLI = "cli", "Command line"
    API = "api", "API"
    DEMO = "demo", "Demo data"
    GIT = "git", "Git"


class GitProvenance(models.Model):
    """The commit something was read from: SHA, author, author date and message."""

    source_commit = models.CharField(
        "commit",
        max_length=40,
        blank=True,
        db_index=True,
        help_text="The git commit (40 hex digits) this was read from.",
    )
    source_commit_author = models.CharField("commit author", max_length=500, blank=True)
    source_commit_time = models.DateTimeField("commit time", null=True, blank=True)
    source_commit_message = models.TextField("commit message", blank=True)

    class Meta:
        abstract = True

    @property
    def short_commit(self) -> str:
        return self.source_commit[:12]


class AgentVersion(AppendOnlyModel, GitProvenance):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    agent = models.ForeignKey(Agent, on_delete=models.PROTECT, related_name="versions")
    version_number = models.PositiveIntegerField(editable=False)

    system_prompt = models.TextField()
    model = models.CharField(max_length=200)
    temperature = models.FloatField()
    max_tokens = models.PositiveIntegerField()
    tools = models.JSONField(default=list, blank=True)
    guardrails = models.JSONField(default=dict, blank=True)
    config_hash = models.CharField(max_length=64, db_index=True, editable=False)

    change_description = models.TextField()
    source = models.CharField(max_length=20, choices=Source.choices)
    source_path = models.CharField(
        max_length=500, blank=True, help_text="The file this version was read from, if any."
    )
    derived_from = models.ForeignKey(
        "self", on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    created_by = person_field()
    created_by_label = models.CharField(max_length=200)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["agent", "-version_number"]
        constraints = [
            *version_number_constraints(
                "agent",
                unique="version_number_unique_per_agent",
                positive="version_number_positive",
            ),
            models.CheckConstraint(
                condition=Q(temperature__gte=MIN_TEMPERATURE, temperature__lte=MAX_TEMPERATURE),
                name="version_temperature_range",
            ),
            models.CheckConstraint(condition=Q(max_tokens__gte=1), name="version_max_tokens_min"),
            models.CheckConstraint(
                condition=(Q(source=Source.GIT) & ~Q(source_commit=""))
                | (~Q(source=Source.GIT) & Q(source_commit="")),
                name="version_commit_if_and_only_if_from_git",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.agent_id and self.agent.slug} v{self.version_number}"

    def get_absolute_url(self) -> str:
        return reverse("admin:versions_agentversion_change", args=[self.pk])

    def require_of(self, agent: Agent, field: str = "version", note: str = "") -> None:
        """Refuse, as an error on `field`, a version of another agent than `agent`: the one
        check every service that takes an agent and a version makes first."""
        if self.agent_id != agent.pk:
            raise ValidationError({field: f"{self} is not a version of {agent.slug}{note}."})

    @property
    def label(self) -> str:
        return f"v{self.version_number}"

    @property
    def config(self) -> dict[str, Any]:
        return {field: getattr(self, field) for field in CONFIG_FIELDS}


class GitConfirmation(AppendOnlyModel, GitProvenance):
    """A git sync found this version's exact configuration at a commit.

    The version was made outside git (browser, CLI, folder import) and a file with the
    same configuration was then synced, so no new version was needed; from here on the
    version counts as in git: it is not drift, and the revert rule measures from this
    commit.
    """

    version = models.OneToOneField(
        AgentVersion, on_delete=models.PROTECT, related_name="git_confirmation"
    )
    source_path = models.CharField(max_length=500, help_text="The file, from the repository root.")
    created_by = person_field()
    created_by_label = models.CharField(max_length=200)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        verbose_name = "git confirmation"
        constraints = [
            models.CheckConstraint(
                condition=~Q(source_commit=""), name="git_confirmation_has_commit"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.version} in git at {self.short_commit}"
