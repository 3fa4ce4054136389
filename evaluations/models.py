"""Evaluation suites (versioned like configurations), runs, per-case results and the gate.

Invariants:
- SuiteVersion and EvalCase are append-only (agentconfig.core.append_only, with a trigger on
  PostgreSQL): a score always names the suite version it was measured on, and that
  version's cases never change. version_number is 1, 2, 3, ... per suite, assigned under
  a lock on the suite row (evaluations.services.suites.create_suite_version), backed by a
  unique constraint.
- CaseResult is append-only: one row per (run, case), written once when the case ends.
- A run's score is set only when the run completes: the weighted mean of its cases, a
  case in error counting as 0 (evaluations.scoring.weighted_score).
- GateOverride is append-only, at most one per (agent, environment, version).
- No API key is stored: runs and policies name the environment variable that holds it,
  one of EVAL_API_KEY_NAMES (allowed_key_variables), never any other variable.
- A policy's base URL passes agentconfig.core.outbound.check_url (https, public addresses).
"""

import uuid

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone
from simple_history.models import HistoricalRecords

from agentconfig.core.append_only import AppendOnlyModel
from agentconfig.core.outbound import OutboundRefused, check_url
from agentconfig.core.versioning import version_number_constraints
from agentconfig.models import Agent, person_field, slug_validator
from deployments.models import Environment
from versions.models import AgentVersion

ENV_VAR_NAME = r"^[A-Za-z_][A-Za-z0-9_]{0,127}$"
# The key an empty key field means (settings.EVAL_API_KEY), always allowed.
GLOBAL_KEY_VARIABLE = "EVAL_API_KEY"
ENDPOINT_PURPOSE = "The evaluation endpoint"


def allowed_key_variables() -> tuple[str, ...]:
    """The variable names a policy (and so a run) may read its key from."""
    names = [GLOBAL_KEY_VARIABLE, *settings.EVAL_API_KEY_NAMES]
    return tuple(dict.fromkeys(name.strip() for name in names if name.strip()))


def key_variable_refusal(name: str) -> str:
    """Why `name` may not hold an evaluation key; what to do instead."""
    return (
        f"{name} is not one of the variables an evaluation key may be read from "
        f"(EVAL_API_KEY_NAMES: {', '.join(allowed_key_variables())}). Choose one of them, "
        "or leave the field empty for EVAL_API_KEY; to use another variable, an operator "
        "adds its name to EVAL_API_KEY_NAMES."
    )


class EvaluationSuite(models.Model):
    """A named set of cases for one agent; its content lives in immutable SuiteVersions."""

    agent = models.ForeignKey(Agent, on_delete=models.PROTECT, related_name="evaluation_suites")
    slug = models.CharField(
        max_length=64,
        validators=[slug_validator],
        help_text="Used in evals/<agent>.yaml, the CLI and the evaluation policy, e.g. smoke.",
    )
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    history = HistoricalRecords()

    class Meta:
        ordering = ["agent", "slug"]
        constraints = [
            models.UniqueConstraint(fields=["agent", "slug"], name="suite_slug_unique_per_agent")
        ]

    def __str__(self) -> str:
        return f"{self.agent.slug}/{self.slug}"

    def get_absolute_url(self) -> str:
        return reverse("admin:evaluations_evaluationsuite_change", args=[self.pk])


class SuiteSource(models.TextChoices):
    BROWSER = "browser", "Browser"
    FILE_IMPORT = "file_import", "File import"
    CLI = "cli", "Command line"


class SuiteVersion(AppendOnlyModel):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    suite = models.ForeignKey(EvaluationSuite, on_delete=models.PROTECT, related_name="versions")
    version_number = models.PositiveIntegerField(editable=False)
    content_hash = models.CharField(max_length=64, db_index=True, editable=False)
    case_count = models.PositiveIntegerField()
    change_description = models.TextField()
    source = models.CharField(max_length=20, choices=SuiteSource.choices)
    source_path = models.CharField(
        max_length=500, blank=True, help_text="The file this version was read from, if any."
    )
    created_by = person_field()
    created_by_label = models.CharField(max_length=200)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["suite", "-version_number"]
        constraints = version_number_constraints(
            "suite", unique="suite_version_number_unique", positive="suite_version_number_positive"
        )

    def __str__(self) -> str:
        return f"{self.suite} v{self.version_number}"

    @property
    def label(self) -> str:
        return f"{self.suite.slug} v{self.version_number}"

    def get_absolute_url(self) -> str:
        return reverse("admin:evaluations_suiteversion_change", args=[self.pk])


class Scorer(models.TextChoices):
    LLM_JUDGE = "llm_judge", "LLM as judge"
    EXACT = "exact", "Exact match"
    CONTAINS = "contains", "Contains"
    REGEX = "regex", "Regular expression"
    VALID_JSON = "valid_json", "Valid JSON"


class EvalCase(AppendOnlyModel):
    suite_version = models.ForeignKey(SuiteVersion, on_delete=models.PROTECT, related_name="cases")
    position = models.PositiveIntegerField(help_text="1 for the first case of the suite.")
    key = models.CharField(max_length=100, help_text="The case's id in the suite file.")
    messages = models.JSONField(help_text="The chat messages sent after the system prompt.")
    golden_answer = models.TextField(blank=True)
    criteria = models.TextField(blank=True)
    tags = models.JSONField(default=list, blank=True)
    weight = models.FloatField(default=1.0)
    scorer = models.CharField(max_length=20, choices=Scorer.choices, default=Scorer.LLM_JUDGE)

    class Meta:
        ordering = ["suite_version", "position"]
        verbose_name = "evaluation case"
        constraints = [
            models.UniqueConstraint(fields=["suite_version", "key"], name="case_key_unique"),
            models.UniqueConstraint(
                fields=["suite_version", "position"], name="case_position_unique"
            ),
            models.CheckConstraint(condition=Q(weight__gt=0), name="case_weight_positive"),
        ]

    def __str__(self) -> str:
        return self.key

    @property
    def input_text(self) -> str:
        """The last user message: what the agent answers."""
        return self.messages[-1]["content"] if self.messages else ""

    @property
    def is_deterministic(self) -> bool:
        return self.scorer != Scorer.LLM_JUDGE


class EvaluationPolicy(models.Model):
    """Whether an environment gates on evaluation, on which suite, and its endpoint."""

    environment = models.OneToOneField(
        Environment, on_delete=models.CASCADE, related_name="evaluation_policy"
    )
    required = models.BooleanField(
        default=False,
        help_text="Deploys and canaries here need a completed run that does not regress.",
    )
    tolerance = models.FloatField(
        default=0.02,
        validators=[MinValueValidator(0.0), MaxValueValidator(1.0)],
        help_text="How far below the stable version's score a candidate may be (0-1).",
    )
    suite_slug = models.CharField(
        max_length=64,
        blank=True,
        validators=[slug_validator],
        help_text="The agent's suite the gate uses; empty: the agent's only suite.",
    )
    base_url = models.URLField(
        max_length=500,
        blank=True,
        help_text="Chat Completions base URL for runs with this environment's settings; "
        "empty: EVAL_API_BASE_URL.",
    )
    api_key_env = models.CharField(
        "API key variable",
        max_length=128,
        blank=True,
        validators=[RegexValidator(ENV_VAR_NAME, "Give an environment variable name.")],
        help_text="The NAME of the environment variable holding the key (never the key), "
        "one of EVAL_API_KEY_NAMES; empty: EVAL_API_KEY.",
    )
    judge_model = models.CharField(max_length=200, blank=True, help_text="Empty: EVAL_JUDGE_MODEL.")
    judge_prompt = models.TextField(blank=True, help_text="Empty: EVAL_JUDGE_PROMPT or built-in.")

    history = HistoricalRecords()

    class Meta:
        verbose_name_plural = "evaluation policies"
        constraints = [
            models.CheckConstraint(
                condition=Q(tolerance__gte=0, tolerance__lte=1), name="eval_policy_tolerance"
            )
        ]

    def __str__(self) -> str:
        return f"evaluation policy of {self.environment.slug}"

    def clean(self) -> None:
        errors: dict[str, str] = {}
        if self.base_url:
            try:
                check_url(self.base_url, purpose=ENDPOINT_PURPOSE)
            except OutboundRefused as exc:
                errors["base_url"] = exc.message
        if self.api_key_env and self.api_key_env not in allowed_key_variables():
            errors["api_key_env"] = key_variable_refusal(self.api_key_env)
        if errors:
            raise ValidationError(errors)


class RunStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    COMPLETED = "completed", "Completed"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


FINISHED_STATUSES = (RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED)


class AnswerSource(models.TextChoices):
    MODEL = "model", "Asked the model"
    RECORDED = "recorded", "Recorded answers"


class EvaluationRun(models.Model):
    """One agent version run against one suite version; progress, settings and score."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    agent = models.ForeignKey(Agent, on_delete=models.PROTECT, related_name="evaluation_runs")
    version = models.ForeignKey(AgentVersion, on_delete=models.PROTECT, related_name="+")
    suite_version = models.ForeignKey(SuiteVersion, on_delete=models.PROTECT, related_name="runs")
    environment = models.ForeignKey(
        Environment,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        help_text="Whose evaluation settings (endpoint, judge) the run used; empty: the "
        "global settings.",
    )
    status = models.CharField(max_length=20, choices=RunStatus.choices, default=RunStatus.QUEUED)
    answer_source = models.CharField(
        max_length=20, choices=AnswerSource.choices, default=AnswerSource.MODEL
    )
    recorded_answers = models.JSONField(
        null=True, blank=True, help_text="Answers by case id, when not asked of the model."
    )

    # The settings the run used, kept so that a score can be explained later.
    base_url = models.CharField(max_length=500, blank=True)
    api_key_env = models.CharField(max_length=128, blank=True)
    judge_model = models.CharField(max_length=200, blank=True)
    judge_prompt = models.TextField(blank=True)
    judge_response_format = models.CharField(max_length=20, blank=True)
    concurrency = models.PositiveSmallIntegerField(default=1)
    timeout_seconds = models.FloatField(default=60.0)
    max_retries = models.PositiveSmallIntegerField(default=0)

    cases_total = models.PositiveIntegerField()
    score = models.FloatField(null=True, blank=True)
    error_count = models.PositiveIntegerField(default=0)
    prompt_tokens = models.PositiveBigIntegerField(default=0)
    completion_tokens = models.PositiveBigIntegerField(default=0)
    judge_prompt_tokens = models.PositiveBigIntegerField(default=0)
    judge_completion_tokens = models.PositiveBigIntegerField(default=0)
    failure = models.TextField(blank=True)
    task_id = models.CharField(max_length=64, blank=True)

    cancel_requested_at = models.DateTimeField(null=True, blank=True)
    cancelled_by_label = models.CharField(max_length=200, blank=True)
    created_by = person_field()
    created_by_label = models.CharField(max_length=200)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "evaluation run"
        indexes = [
            models.Index(
                fields=["version", "suite_version", "status", "-finished_at"],
                name="eval_run_by_version",
            )
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(score__isnull=True) | Q(score__gte=0, score__lte=1),
                name="eval_run_score_range",
            ),
            models.CheckConstraint(
                condition=Q(score__isnull=True) | Q(status="completed"),
                name="eval_run_score_only_when_completed",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.agent.slug} v{self.version.version_number} on {self.suite_version.label}"

    def get_absolute_url(self) -> str:
        return reverse("admin:evaluations_evaluationrun_change", args=[self.pk])

    @property
    def is_finished(self) -> bool:
        return self.status in FINISHED_STATUSES

    @property
    def is_scorable(self) -> bool:
        """Counts for the gate: completed, with answers the model gave."""
        return self.status == RunStatus.COMPLETED and self.answer_source == AnswerSource.MODEL

    @property
    def total_tokens(self) -> int:
        return (
            self.prompt_tokens
            + self.completion_tokens
            + self.judge_prompt_tokens
            + self.judge_completion_tokens
        )


class CaseResult(AppendOnlyModel):
    run = models.ForeignKey(EvaluationRun, on_delete=models.PROTECT, related_name="results")
    case = models.ForeignKey(EvalCase, on_delete=models.PROTECT, related_name="+")
    answer = models.TextField(blank=True)
    score = models.FloatField(null=True, blank=True, help_text="Empty when the case failed.")
    rationale = models.TextField(blank=True)
    error = models.TextField(blank=True)
    error_detail = models.TextField(
        blank=True,
        help_text="What the endpoint answered with the error (truncated); shown only to "
        "those who may see the evaluation policy, since it is the remote server's text.",
    )
    judge_reply = models.TextField(blank=True, help_text="The judge's raw reply.")
    prompt_tokens = models.PositiveIntegerField(null=True, blank=True)
    completion_tokens = models.PositiveIntegerField(null=True, blank=True)
    judge_prompt_tokens = models.PositiveIntegerField(null=True, blank=True)
    judge_completion_tokens = models.PositiveIntegerField(null=True, blank=True)
    latency_ms = models.PositiveIntegerField(null=True, blank=True)
    judge_latency_ms = models.PositiveIntegerField(null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["run", "case__position"]
        constraints = [
            models.UniqueConstraint(fields=["run", "case"], name="one_result_per_run_case"),
            models.CheckConstraint(
                condition=Q(score__isnull=True) | Q(score__gte=0, score__lte=1),
                name="case_result_score_range",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.case.key}: {'error' if self.score is None else f'{self.score:.2f}'}"


class GateOverride(AppendOnlyModel):
    """A reviewer let a version past a failing evaluation gate, and said why."""

    agent = models.ForeignKey(Agent, on_delete=models.PROTECT, related_name="+")
    environment = models.ForeignKey(Environment, on_delete=models.PROTECT, related_name="+")
    version = models.ForeignKey(AgentVersion, on_delete=models.PROTECT, related_name="+")
    gate_status = models.CharField(max_length=30, help_text="What the gate said when overridden.")
    explanation = models.TextField()
    candidate_run = models.ForeignKey(
        EvaluationRun, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    baseline_run = models.ForeignKey(
        EvaluationRun, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    actor = person_field()
    actor_label = models.CharField(max_length=200)
    reason = models.TextField()
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["agent", "environment", "version"], name="one_gate_override_per_version"
            )
        ]
        permissions = [
            ("override_gate", "Can let a version past a failing evaluation gate, with a reason")
        ]

    def __str__(self) -> str:
        return (
            f"{self.agent.slug} v{self.version.version_number} into {self.environment.slug}: "
            f"overridden by {self.actor_label}"
        )
