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

from agentconfig.append_only import AppendOnlyModel
from agentconfig.models import Agent
from deployments.models.core import Environment
from versions.models import AgentVersion


class RequestKind(models.TextChoices):
    STABLE = "stable", "Deploy as stable"
    CANARY = "canary", "Start a canary"


class RequestStatus(models.TextChoices):
    OPEN = "open", "Open"
    REJECTED = "rejected", "Rejected"
    WITHDRAWN = "withdrawn", "Withdrawn"
    APPLIED = "applied", "Applied"


class DeploymentRequest(models.Model):
    agent = models.ForeignKey(Agent, on_delete=models.PROTECT, related_name="deployment_requests")
    environment = models.ForeignKey(
        Environment, on_delete=models.PROTECT, related_name="deployment_requests"
    )
    version = models.ForeignKey(AgentVersion, on_delete=models.PROTECT, related_name="+")
    kind = models.CharField(max_length=10, choices=RequestKind.choices, default=RequestKind.STABLE)
    # For canaries: "5" (a percentage) or "1,5,25,50" (steps).
    canary_plan = models.CharField(max_length=200, blank=True)
    reason = models.TextField()
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
            )
        ]
        permissions = [
            ("review_deploymentrequest", "Can approve or reject deployment requests"),
            ("break_glass", "Can deploy without approval in an emergency (break glass)"),
        ]

    def __str__(self) -> str:
        what = "canary" if self.kind == RequestKind.CANARY else "deploy"
        target = f"{self.agent.slug} v{self.version.version_number}"
        return f"#{self.pk} {what} {target} to {self.environment.slug}"

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
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"{self.decision} by {self.reviewer} on request #{self.request_id}"
