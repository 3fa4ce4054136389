"""Canary rollouts, the analysis policy per environment, decisions and outcome counts.

Invariants:
- At most one running rollout per (agent, environment): a partial unique index.
- A rollout's salt is its own id, never a version id, so successive rollouts deal
  users afresh (agentconfig/bucketing.py).
- Outcomes are stored as counts per (agent, environment, version, track, minute), so the
  cost of an analysis does not grow with the number of events ever received. Event ids
  are kept for OUTCOME_DEDUP_DAYS to make a retried batch count once.
- CanaryDecision rows are append-only: what the analysis saw and what it decided.
- A policy's numbers are finite and within POLICY_LIMITS (checked by
  deployments.governance.clean_canary_policy, which the admin form runs too): the
  analysis squares the ratios and adds the bake time to dates, which must not overflow.
"""

import uuid

from django.db import models
from django.db.models import Q
from django.utils import timezone
from simple_history.models import HistoricalRecords

from agentconfig.append_only import AppendOnlyModel
from agentconfig.models import Agent
from deployments.models.core import Environment
from versions.models import AgentVersion

OUTCOME_DEDUP_DAYS = 7
# (minimum, maximum) of a canary policy's numbers; the confidences are in the open
# interval (0.5, 1), as the check constraints say.
POLICY_LIMITS = {
    "bake_minutes": (0, 10_080),  # a week: a step that needs longer is not a canary
    "min_outcomes": (1, 1_000_000),
    "rollback_ratio": (1, 100),
    "promote_ratio": (1, 100),
    "max_latency_ratio": (1, 100),
    "max_score_drop": (0, 1_000_000),
}


class CanaryPolicy(models.Model):
    """How canaries in one environment are judged; defaults are the documented ones."""

    environment = models.OneToOneField(
        Environment, on_delete=models.CASCADE, related_name="canary_policy"
    )
    default_steps = models.CharField(
        max_length=200,
        default="1,5,25,50",
        help_text="Percentages of users, comma separated; promotion follows the last step.",
    )
    bake_minutes = models.PositiveIntegerField(
        default=30, help_text="Minimum time each step runs before it may advance."
    )
    min_outcomes = models.PositiveIntegerField(
        default=200, help_text="Outcomes each arm needs in a step before anything is decided."
    )
    rollback_ratio = models.FloatField(
        default=1.5,
        help_text="Roll back when the canary's error rate is clearly above this x stable.",
    )
    promote_ratio = models.FloatField(
        default=1.1,
        help_text="Advance when the canary's error rate is not significantly above this x stable.",
    )
    rollback_confidence = models.FloatField(
        default=0.99, help_text="One-sided confidence needed to roll back (0.5-0.9999)."
    )
    promote_confidence = models.FloatField(
        default=0.95, help_text="One-sided confidence of the 'probably worse' hold (0.5-0.9999)."
    )
    max_score_drop = models.FloatField(
        null=True,
        blank=True,
        help_text="Optional: roll back when the mean score drops clearly by more.",
    )
    max_latency_ratio = models.FloatField(
        null=True,
        blank=True,
        help_text="Optional: roll back when mean latency is clearly above this x stable.",
    )

    history = HistoricalRecords()

    class Meta:
        verbose_name_plural = "canary policies"
        constraints = [
            # The analysis divides by the sample sizes; zero would decide on no evidence.
            models.CheckConstraint(condition=Q(min_outcomes__gte=1), name="policy_min_outcomes"),
            models.CheckConstraint(
                condition=Q(rollback_ratio__gte=1), name="policy_rollback_ratio"
            ),
            models.CheckConstraint(condition=Q(promote_ratio__gte=1), name="policy_promote_ratio"),
            models.CheckConstraint(
                condition=Q(rollback_confidence__gt=0.5, rollback_confidence__lt=1),
                name="policy_rollback_confidence",
            ),
            models.CheckConstraint(
                condition=Q(promote_confidence__gt=0.5, promote_confidence__lt=1),
                name="policy_promote_confidence",
            ),
        ]

    def __str__(self) -> str:
        return f"canary policy of {self.environment.slug}"


class CanaryStatus(models.TextChoices):
    RUNNING = "running", "Running"
    PROMOTED = "promoted", "Promoted"
    ROLLED_BACK = "rolled_back", "Rolled back"
    ABORTED = "aborted", "Aborted"


class CanaryRollout(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    agent = models.ForeignKey(Agent, on_delete=models.PROTECT, related_name="canaries")
    environment = models.ForeignKey(Environment, on_delete=models.PROTECT, related_name="canaries")
    stable_version = models.ForeignKey(AgentVersion, on_delete=models.PROTECT, related_name="+")
    canary_version = models.ForeignKey(AgentVersion, on_delete=models.PROTECT, related_name="+")
    # [[basis_points, bake_seconds], ...]: percentages in 1/100 %, strictly increasing.
    steps = models.JSONField()
    step_index = models.PositiveSmallIntegerField(default=0)
    basis_points = models.PositiveIntegerField(help_text="Current share of users, in 1/100 %.")
    status = models.CharField(
        max_length=20, choices=CanaryStatus.choices, default=CanaryStatus.RUNNING
    )
    started_at = models.DateTimeField(default=timezone.now)
    step_started_at = models.DateTimeField(default=timezone.now)
    ended_at = models.DateTimeField(null=True, blank=True)
    started_by_label = models.CharField(max_length=200)
    ended_by_label = models.CharField(max_length=200, blank=True)
    end_reason = models.TextField(blank=True)

    history = HistoricalRecords()

    class Meta:
        ordering = ["-started_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["agent", "environment"],
                condition=Q(status="running"),
                name="one_running_canary_per_agent_environment",
            ),
            models.CheckConstraint(
                condition=Q(basis_points__gte=1, basis_points__lte=9999),
                name="canary_basis_points_range",
            ),
        ]

    def __str__(self) -> str:
        target = f"{self.agent.slug}@{self.environment.slug}"
        return f"{target} canary v{self.canary_version.version_number}"

    @property
    def salt(self) -> str:
        return f"canary:{self.id}"

    @property
    def percent(self) -> float:
        return self.basis_points / 100

    @property
    def is_running(self) -> bool:
        return self.status == CanaryStatus.RUNNING


class CanaryDecision(AppendOnlyModel):
    rollout = models.ForeignKey(CanaryRollout, on_delete=models.PROTECT, related_name="decisions")
    verdict = models.CharField(max_length=20)
    explanation = models.TextField()
    inputs = models.JSONField()
    step_index = models.PositiveSmallIntegerField()
    basis_points = models.PositiveIntegerField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"{self.verdict}: {self.explanation[:80]}"


class Track(models.TextChoices):
    STABLE = "stable", "Stable"
    CANARY = "canary", "Canary"


class OutcomeEventId(models.Model):
    """Ids of recently received events, so a retried batch counts once."""

    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="+")
    environment = models.ForeignKey(Environment, on_delete=models.CASCADE, related_name="+")
    event_id = models.CharField(max_length=200)
    received_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["agent", "environment", "event_id"], name="outcome_event_id_unique"
            )
        ]

    def __str__(self) -> str:
        return self.event_id


class OutcomeCount(models.Model):
    """Outcomes of one version on one track in one minute, aggregated."""

    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="+")
    environment = models.ForeignKey(Environment, on_delete=models.CASCADE, related_name="+")
    version = models.ForeignKey(AgentVersion, on_delete=models.PROTECT, related_name="+")
    track = models.CharField(max_length=10, choices=Track.choices)
    bucket_start = models.DateTimeField()
    n = models.PositiveIntegerField(default=0)
    errors = models.PositiveIntegerField(default=0)
    latency_count = models.PositiveIntegerField(default=0)
    latency_sum = models.FloatField(default=0)
    latency_sumsq = models.FloatField(default=0)
    score_count = models.PositiveIntegerField(default=0)
    score_sum = models.FloatField(default=0)
    score_sumsq = models.FloatField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["agent", "environment", "version", "track", "bucket_start"],
                name="outcome_count_unique_bucket",
            )
        ]
        indexes = [
            models.Index(fields=["agent", "environment", "bucket_start"], name="outcome_by_time")
        ]

    def __str__(self) -> str:
        return f"{self.track} {self.bucket_start:%Y-%m-%d %H:%M}: {self.errors}/{self.n} errors"
