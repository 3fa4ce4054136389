"""Deployment requests and their reviews.

Invariants:
- At most one open request per (agent, environment, version): a partial unique index.
- A review is append-only and records which version was active in the target
  environment when it was given: if that changes, the review no longer counts (the
  reviewer approved a diff that is no longer the real one).
- A request is applied at most once, through the same deploy or canary service as any
  other deploy; the release-log row names the request.
"""

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone
from simple_history.models import HistoricalRecords

from agentconfig.core.append_only import AppendOnlyModel
from agentconfig.models import Agent
from deployments.models.core import Environment
from versions.models import AgentVersion


class RequestKind(models.TextChoices):
    STABLE = "stable", "Deploy as stable"
    CANARY = "canary", "Start a canary"
    # Changes that are not a version: what to apply is the request's `proposal`, handled
    # by the subject registered for the kind (deployments.services.requests.register_subject).
    FLAG = "flag", "Change a flag"
    SETTINGS = "settings", "Change environment settings"


# Kinds whose subject is a version of the agent.
VERSION_KINDS = (RequestKind.STABLE, RequestKind.CANARY)


class RequestStatus(models.TextChoices):
    OPEN = "open", "Open"
    REJECTED = "rejected", "Rejected"
    WITHDRAWN = "withdrawn", "Withdrawn"
    APPLIED = "applied", "Applied"


class DeploymentRequest(models.Model):
    """A change that needs approval before it reaches runtimes: a release (a version, as
    stable or canary), a flag change, or a change of an environment's release rules."""

    # None for changes that concern no single agent (a global flag, environment settings).
    agent = models.ForeignKey(
        Agent,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="deployment_requests",
    )
    environment = models.ForeignKey(
        Environment, on_delete=models.PROTECT, related_name="deployment_requests"
    )
    # Releases only.
    version = models.ForeignKey(
        AgentVersion, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    kind = models.CharField(max_length=10, choices=RequestKind.choices, default=RequestKind.STABLE)
    # For canaries: "5" (a percentage) or "1,5,25,50" (steps).
    canary_plan = models.CharField(max_length=200, blank=True)
    reason = models.TextField()
    # Flag and settings changes: what will be applied, exactly (validated by the subject).
    proposal = models.JSONField(default=dict, blank=True)
    # Flag and settings changes: a fingerprint of the subject's state when the request was
    # opened; approvals count only while the state is still the one they saw.
    base_state = models.CharField(max_length=64, blank=True)
    # The stable version in the target environment when the request was opened, for context.
    base_version = models.ForeignKey(
        AgentVersion, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    requested_by_label = models.CharField(max_length=200)
    status = models.CharField(
        max_length=20, choices=RequestStatus.choices, default=RequestStatus.OPEN
    )
    created_at = models.DateTimeField(default=timezone.now)
    closed_at = models.DateTimeField(null=True, blank=True)
    closed_by_label = models.CharField(max_length=200, blank=True)

    history = HistoricalRecords()

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["agent", "environment", "version"],
                condition=Q(status="open"),
                name="one_open_request_per_target",
            ),
            models.CheckConstraint(
                condition=Q(
                    kind__in=["stable", "canary"], version__isnull=False, agent__isnull=False
                )
                | Q(kind__in=["flag", "settings"], version__isnull=True),
                name="release_requests_name_a_version",
            ),
        ]
        permissions = [
            ("review_deploymentrequest", "Can approve or reject deployment requests"),
            ("break_glass", "Can deploy without approval in an emergency (break glass)"),
        ]

    def __str__(self) -> str:
        if self.version is None or self.agent is None:
            summary = self.proposal.get("summary", self.get_kind_display().lower())
            return f"#{self.pk} {summary} in {self.environment.slug}"
        what = "canary" if self.kind == RequestKind.CANARY else "deploy"
        target = f"{self.agent.slug} v{self.version.version_number}"
        return f"#{self.pk} {what} {target} to {self.environment.slug}"

    @property
    def is_release(self) -> bool:
        return self.kind in VERSION_KINDS

    @property
    def is_open(self) -> bool:
        return self.status == RequestStatus.OPEN


class ReviewDecision(models.TextChoices):
    APPROVE = "approve", "Approve"
    REJECT = "reject", "Reject"


class RequestReview(AppendOnlyModel):
    request = models.ForeignKey(DeploymentRequest, on_delete=models.PROTECT, related_name="reviews")
    reviewer = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    decision = models.CharField(max_length=10, choices=ReviewDecision.choices)
    comment = models.TextField()
    # What was active in the target environment when the reviewer looked.
    active_version = models.ForeignKey(
        AgentVersion, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    # Flag and settings changes: the subject's state fingerprint the reviewer saw.
    base_state = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"{self.decision} by {self.reviewer} on request #{self.request_id}"
