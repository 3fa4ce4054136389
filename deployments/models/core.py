"""Environments, the active pointer per (agent, environment), the release log and API keys.

Invariants:
- Exactly one Pointer per (agent, environment): a unique constraint. Its stable
  version always belongs to its agent (checked by deployments.services.releases, the only writer).
- ReleaseLogEntry is append-only: every pointer move writes one row, in the same
  transaction as the move, saying from which version to which, the kind, who and why.
"""

from django.db import models
from django.utils import timezone
from simple_history.models import HistoricalRecords

from agentconfig.core.append_only import AppendOnlyModel
from agentconfig.models import Agent, person_field, slug_validator
from versions.models import AgentVersion


class Environment(models.Model):
    slug = models.CharField(max_length=64, unique=True, validators=[slug_validator])
    name = models.CharField(max_length=200)
    position = models.PositiveSmallIntegerField(
        default=100, help_text="Environments are listed in this order (lowest first)."
    )
    required_approvals = models.PositiveSmallIntegerField(
        default=1,
        help_text="Approvals by reviewers (other than the requester) a deploy or canary here "
        "needs. 0: deployers deploy directly. Rollbacks never need approval.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    history = HistoricalRecords()

    class Meta:
        ordering = ["position", "slug"]

    def __str__(self) -> str:
        return self.slug

    @property
    def requires_approval(self) -> bool:
        """Whether changes that reach runtimes here need approved requests."""
        return self.required_approvals > 0


class Pointer(models.Model):
    """Which version of an agent is active in an environment."""

    agent = models.ForeignKey(Agent, on_delete=models.PROTECT, related_name="pointers")
    environment = models.ForeignKey(Environment, on_delete=models.PROTECT, related_name="pointers")
    stable_version = models.ForeignKey(AgentVersion, on_delete=models.PROTECT, related_name="+")
    # The running canary, if any; its version and percentage live on the rollout.
    canary = models.OneToOneField(
        "deployments.CanaryRollout",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
    )
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
            ("manage_canary", "Can start, change, promote and abort canaries"),
        ]

    def __str__(self) -> str:
        return f"{self.agent.slug}@{self.environment.slug} -> v{self.stable_version.version_number}"


class ReleaseKind(models.TextChoices):
    DEPLOY = "deploy", "Deploy"
    ROLLBACK = "rollback", "Rollback"
    CANARY_START = "canary_start", "Canary started"
    CANARY_CHANGE = "canary_change", "Canary percentage changed"
    PROMOTE = "promote", "Canary promoted"
    CANARY_ABORT = "canary_abort", "Canary aborted"
    CANARY_ROLLBACK = "canary_rollback", "Canary rolled back"


# Kinds after which to_version is the stable version: the versions that have been
# "active" in an environment, and so the only rollback targets.
STABLE_KINDS = (ReleaseKind.DEPLOY, ReleaseKind.ROLLBACK, ReleaseKind.PROMOTE)


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
    actor = person_field()
    actor_label = models.CharField(max_length=200)
    reason = models.TextField()
    # The request this release applied, and the canary rollout it started, moved or ended:
    # relations, so that a request finds its release and a rollout its steps by key.
    request = models.ForeignKey(
        "deployments.DeploymentRequest",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="releases",
    )
    rollout = models.ForeignKey(
        "deployments.CanaryRollout",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="release_log",
    )
    # Free-form extras only: canary steps and percentages, break glass, the gate's verdict.
    details = models.JSONField(default=dict, blank=True, help_text="e.g. canary percentages")
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
