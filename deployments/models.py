"""Environments, the active pointer per (agent, environment), the release log and API keys.

Invariants:
- Exactly one Pointer per (agent, environment): a unique constraint. Its stable
  version always belongs to its agent (checked by deployments.services, the only writer).
- ReleaseLogEntry is append-only: every pointer move writes one row, in the same
  transaction as the move, saying from which version to which, the kind, who and why.
- An ApiKey is stored only as the SHA-256 of the full key; the plaintext is shown once.
"""

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone
from simple_history.models import HistoricalRecords

from agentconfig.append_only import AppendOnlyModel
from agentconfig.models import Agent, slug_validator
from versions.models import AgentVersion


class Environment(models.Model):
    slug = models.CharField(max_length=64, unique=True, validators=[slug_validator])
    name = models.CharField(max_length=200)
    position = models.PositiveSmallIntegerField(
        default=100, help_text="Environments are listed in this order (lowest first)."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    history = HistoricalRecords()

    class Meta:
        ordering = ["position", "slug"]

    def __str__(self) -> str:
        return self.slug


class Pointer(models.Model):
    """Which version of an agent is active in an environment."""

    agent = models.ForeignKey(Agent, on_delete=models.PROTECT, related_name="pointers")
    environment = models.ForeignKey(Environment, on_delete=models.PROTECT, related_name="pointers")
    stable_version = models.ForeignKey(AgentVersion, on_delete=models.PROTECT, related_name="+")
    updated_at = models.DateTimeField(auto_now=True)
    updated_by_label = models.CharField(max_length=200)

    history = HistoricalRecords()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["agent", "environment"], name="one_pointer_per_agent_environment"
            )
        ]
        permissions = [
            ("deploy_version", "Can deploy a version to an environment"),
            ("rollback_version", "Can roll an environment back to an earlier version"),
        ]

    def __str__(self) -> str:
        return f"{self.agent.slug}@{self.environment.slug} -> v{self.stable_version.version_number}"


class ReleaseKind(models.TextChoices):
    DEPLOY = "deploy", "Deploy"
    ROLLBACK = "rollback", "Rollback"


class ReleaseLogEntry(AppendOnlyModel):
    agent = models.ForeignKey(Agent, on_delete=models.PROTECT, related_name="release_log")
    environment = models.ForeignKey(
        Environment, on_delete=models.PROTECT, related_name="release_log"
    )
    kind = models.CharField(max_length=20, choices=ReleaseKind.choices)
    from_version = models.ForeignKey(
        AgentVersion, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    to_version = models.ForeignKey(AgentVersion, on_delete=models.PROTECT, related_name="+")
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    actor_label = models.CharField(max_length=200)
    reason = models.TextField()
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["-id"]
        verbose_name = "release log entry"
        verbose_name_plural = "release log entries"
        indexes = [
            models.Index(fields=["agent", "environment", "-id"], name="release_log_by_target")
        ]

    def __str__(self) -> str:
        start = f"v{self.from_version.version_number}" if self.from_version else "nothing"
        return (
            f"{self.agent.slug}@{self.environment.slug}: {self.kind} {start} -> "
            f"v{self.to_version.version_number}"
        )


class ApiKey(models.Model):
    """A runtime's credential for one environment. Format: acfg_<key_id>_<secret>."""

    name = models.CharField(max_length=100)
    environment = models.ForeignKey(Environment, on_delete=models.PROTECT, related_name="api_keys")
    key_id = models.CharField(max_length=32, unique=True, editable=False)
    key_hash = models.CharField(max_length=64, editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    created_by_label = models.CharField(max_length=200, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_by_label = models.CharField(max_length=200, blank=True, editable=False)

    history = HistoricalRecords()

    class Meta:
        verbose_name = "API key"
        constraints = [
            # Names identify keys on the command line; a revoked key's name may be reused.
            models.UniqueConstraint(
                fields=["name"],
                condition=Q(revoked_at__isnull=True),
                name="api_key_name_unique_active",
            )
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.environment.slug})"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None
