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
  deployments.services.environments.clean_canary_policy, which the admin form runs too): the
  analysis squares the ratios and adds the bake time to dates, which must not overflow.
"""

import uuid

from django.db import models
from django.db.models import Q
from django.utils import timezone
from simple_history.models import HistoricalRecords

from agentconfig.core.append_only import AppendOnlyModel
from agentconfig.models import Agent
from deployments.models.core import Environment
from versions.models import AgentVersion

OUTCOME_DEDUP_DAYS = 7
# (minimum, maximum) of a canary policy's numbers; the confidences and power are in the
# open interval (0.5, 1), as the check constraints say.
POLICY_LIMITS = {
    "bake_minutes": (0, 10_080),  # a week: a step that needs longer is not a canary
    "margin": (1, 100),
    "max_error_increase": (0, 0.5),
    "rollback_ratio": (1, 100),
    "min_regression": (0, 100),
    "max_latency_ratio": (1, 100),
    "latency_quantile": (0.5, 0.999),
    "max_score_drop": (0, 1_000_000),
    "srm_tolerance": (0, 0.99),
    "max_duration_minutes": (1, 43_200),  # 30 days
}


class DeadlineAction(models.TextChoices):
    # The same values as deployments.canary_analysis.DeadlineAction, which the pure
    # analysis compares with (tests/deployments/test_canary_analysis.py checks it).
    ROLLBACK = "rollback", "Roll back"
    PROMOTE = "promote", "Promote"


class CanaryPolicy(models.Model):
    """How canaries in one environment are judged; defaults are the documented ones
    (docs/decisions/0016-canary-decisions.md explains each number)."""

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
    margin = models.FloatField(
        default=1.25,
        help_text=(
            "Promotion needs the canary's error rate shown at most this x stable's; earlier "
            "steps get the same harm budget spread over fewer users (1.25 lets 5 % of users "
            "go up to 6x, 50 % up to 1.5x)."
        ),
    )
    max_error_increase = models.FloatField(
        default=0.0025,
        help_text=(
            "Or at most this much above stable's, as a fraction (0.0025 = 0.25 percentage "
            "points): for agents whose error rates are too low for a ratio to ever be shown. "
            "0 to judge by the ratio only."
        ),
    )
    promote_confidence = models.FloatField(
        default=0.95, help_text="Confidence with which a step must be shown within its bar."
    )
    rollback_ratio = models.FloatField(
        default=1.25,
        help_text="Roll back when the canary's error rate is shown above this x stable's.",
    )
    rollback_confidence = models.FloatField(
        default=0.99,
        help_text="Confidence needed to roll back, over the canary's whole life (0.5-0.9999).",
    )
    min_regression = models.FloatField(
        default=0.5,
        help_text=(
            "The smallest regression promotion must not miss, relative (0.5 = 1.5x stable's "
            "error rate); with the power it sets the minimum number of outcomes."
        ),
    )
    power = models.FloatField(
        default=0.8, help_text="Probability of catching a regression of min regression."
    )
    max_latency_ratio = models.FloatField(
        null=True,
        blank=True,
        default=1.25,
        help_text=(
            "Roll back when the canary's latency quantile is shown above this x stable's; "
            "promotion needs it shown within. Empty to ignore latency."
        ),
    )
    latency_quantile = models.FloatField(
        default=0.95, help_text="Which latency quantile is compared (0.95 = p95)."
    )
    max_score_drop = models.FloatField(
        null=True,
        blank=True,
        help_text=(
            "Optional: roll back when the mean score is shown lower by more than this; "
            "promotion needs it shown within. In the score's own units."
        ),
    )
    srm_tolerance = models.FloatField(
        default=0.2,
        help_text=(
            "Hold when the canary's share of outcomes is shown to differ from its share of "
            "users by more than this, relative (0.2 = 20 %)."
        ),
    )
    max_duration_minutes = models.PositiveIntegerField(
        default=1440, help_text="An undecided canary ends after this long (default 24 h)."
    )
    deadline_action = models.CharField(
        max_length=10,
        choices=DeadlineAction.choices,
        default=DeadlineAction.ROLLBACK,
        help_text="What ends an undecided canary at its maximum duration.",
    )

    history = HistoricalRecords()

    class Meta:
        verbose_name_plural = "canary policies"
        constraints = [
            models.CheckConstraint(condition=Q(margin__gte=1), name="policy_margin"),
            models.CheckConstraint(
                condition=Q(max_error_increase__gte=0, max_error_increase__lt=1),
                name="policy_max_error_increase",
            ),
            models.CheckConstraint(
                condition=Q(rollback_ratio__gte=1), name="policy_rollback_ratio"
            ),
            models.CheckConstraint(
                condition=Q(rollback_confidence__gt=0.5, rollback_confidence__lt=1),
                name="policy_rollback_confidence",
            ),
            models.CheckConstraint(
                condition=Q(promote_confidence__gt=0.5, promote_confidence__lt=1),
                name="policy_promote_confidence",
            ),
            models.CheckConstraint(condition=Q(power__gt=0.5, power__lt=1), name="policy_power"),
            # A regression the rollback test could never show is one it cannot catch.
            models.CheckConstraint(
                condition=Q(min_regression__gt=0)
                & Q(min_regression__gt=models.F("rollback_ratio") - 1),
                name="policy_min_regression",
            ),
            models.CheckConstraint(
                condition=Q(latency_quantile__gte=0.5, latency_quantile__lte=0.999),
                name="policy_latency_quantile",
            ),
            models.CheckConstraint(
                condition=Q(srm_tolerance__gte=0, srm_tolerance__lt=1),
                name="policy_srm_tolerance",
            ),
            models.CheckConstraint(
                condition=Q(max_duration_minutes__gte=1), name="policy_max_duration"
            ),
            models.CheckConstraint(
                condition=Q(deadline_action__in=DeadlineAction.values),
                name="policy_deadline_action",
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
    # Ended by the policy's maximum duration, not by evidence (see CanaryPolicy).
    ended_by_deadline = models.BooleanField(default=False)

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


class OutcomeLatency(models.Model):
    """How many answers of one version on one track in one minute fell in one latency bin.

    Bins are 5 % wide (deployments.sequential.latency_bin), so a quantile is known to
    within a few per cent and a minute of one arm touches a few dozen rows.
    """

    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="+")
    environment = models.ForeignKey(Environment, on_delete=models.CASCADE, related_name="+")
    version = models.ForeignKey(AgentVersion, on_delete=models.PROTECT, related_name="+")
    track = models.CharField(max_length=10, choices=Track.choices)
    bucket_start = models.DateTimeField()
    bin = models.PositiveSmallIntegerField()
    count = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["agent", "environment", "version", "track", "bucket_start", "bin"],
                name="outcome_latency_unique_bin",
            )
        ]

    def __str__(self) -> str:
        return f"{self.track} {self.bucket_start:%Y-%m-%d %H:%M} bin {self.bin}: {self.count}"
