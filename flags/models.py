"""Feature flags, their state per environment, and the tools they gate.

Invariants:
- A flag's key is unique across all agents and never changes: OFREP clients, tool gates
  and the bucketing salt ("flag:<key>") all name it. Keys starting with "agent." are
  reserved for agent configurations served through OFREP.
- Kind and scope never change after creation (rules and gates were validated against them).
- At most one FlagEnvironment per (flag, environment). A missing row means "off" and
  serves the flag's initial off variant (flags.rules.initial_variants).
- Rules and variants are stored in their canonical JSON (flags.rules); only
  flags.services.flags writes them, after validation, under a lock on the flag row.
- Every change of every model here writes a history row (simple-history) naming the
  user; the FlagEnvironment row also carries who changed it last and why.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.db import models
from django.urls import reverse
from simple_history.models import HistoricalRecords

from agentconfig.models import Agent
from deployments.models import Environment
from flags import rules

FLAG_KEY_PATTERN = r"^[a-z0-9](?:[a-z0-9._-]{0,98}[a-z0-9])?$"
RESERVED_PREFIXES = ("agent.",)
flag_key_validator = RegexValidator(
    FLAG_KEY_PATTERN,
    "Use 1-100 lowercase letters, digits, '.', '_' and '-', starting and ending with a letter "
    "or digit (for example 'web-search' or 'billing.refunds').",
)
tool_name_validator = RegexValidator(
    r"^[A-Za-z_][A-Za-z0-9_-]{0,63}$",
    "Use the tool's name as in the agent's configuration: letters, digits, '_' and '-', at "
    "most 64 characters, not starting with a digit.",
)


def validate_flag_key_prefix(value: str) -> None:
    for prefix in RESERVED_PREFIXES:
        if value.startswith(prefix):
            raise ValidationError(
                f"keys starting with {prefix!r} are reserved for agent configurations "
                "served through OpenFeature; choose another key."
            )


class FlagKind(models.TextChoices):
    BOOLEAN = rules.BOOLEAN, "Boolean (on/off)"
    STRING = rules.STRING, "String variants"
    JSON = rules.JSON, "JSON variants"


class Flag(models.Model):
    key = models.CharField(
        max_length=100,
        unique=True,
        validators=[flag_key_validator, validate_flag_key_prefix],
        help_text="How code and OpenFeature clients name the flag, e.g. web-search. "
        "Cannot be changed later.",
    )
    kind = models.CharField(max_length=10, choices=FlagKind.choices, default=FlagKind.BOOLEAN)
    description = models.TextField(blank=True, help_text="What the flag turns on, for whom.")
    owner = models.CharField(
        max_length=200, blank=True, help_text="Who to ask about it: a team or a person."
    )
    agent = models.ForeignKey(
        Agent,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="flags",
        help_text="Leave empty for a global flag; choose an agent to scope it to that agent.",
    )
    variants = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    created_by_label = models.CharField(max_length=200, editable=False)
    # Who wrote the row last (also set just before a delete, so the history row names
    # the deleter even when it is a system actor without a user).
    updated_by_label = models.CharField(max_length=200, editable=False)

    history = HistoricalRecords()

    class Meta:
        ordering = ["key"]
        permissions = [
            ("kill_switch", "Can turn a flag off in an environment with the kill switch"),
        ]

    def __str__(self) -> str:
        return self.key

    def get_absolute_url(self) -> str:
        return reverse("admin:flags_flag_change", args=[self.pk])

    def clean(self) -> None:
        try:
            self.variants = rules.validate_variants(self.kind, self.variants or None)
        except rules.RulesError as exc:
            raise ValidationError({"variants": exc.messages}) from None

    @property
    def scope_label(self) -> str:
        return f"agent {self.agent.slug}" if self.agent_id and self.agent else "global"

    @property
    def variant_names(self) -> list[str]:
        return rules.variant_names(self.variants)

    @property
    def initial_variants(self) -> tuple[str, str]:
        """(default, off) variant in an environment where the flag has no state yet."""
        return rules.initial_variants(self.kind, self.variant_names)

    def variant_value(self, name: str) -> Any:
        return next((v["value"] for v in self.variants if v["name"] == name), None)


class FlagEnvironment(models.Model):
    """A flag's state in one environment: on/off, variants served, targeting rules."""

    flag = models.ForeignKey(Flag, on_delete=models.CASCADE, related_name="states")
    environment = models.ForeignKey(
        Environment, on_delete=models.PROTECT, related_name="flag_states"
    )
    enabled = models.BooleanField(default=False)
    off_variant = models.CharField(
        max_length=64, help_text="Served to everyone while the flag is off."
    )
    default_variant = models.CharField(
        max_length=64, help_text="Served while the flag is on and no rule matches."
    )
    rules = models.JSONField(default=list, blank=True)
    # Incremented by every change, so an editor can tell that someone else saved first.
    revision = models.PositiveIntegerField(default=0)
    # Set by the kill switch, cleared when the flag is turned on again: while it is set,
    # only someone who may use the kill switch can undo what it did (turn the flag on, or
    # change the variant served while off).
    killed_at = models.DateTimeField(null=True, blank=True, editable=False)
    killed_by_label = models.CharField(max_length=200, blank=True, editable=False)
    updated_at = models.DateTimeField(auto_now=True)
    updated_by_label = models.CharField(max_length=200, editable=False)
    change_reason = models.TextField(blank=True, help_text="Why the latest change was made.")

    history = HistoricalRecords()

    class Meta:
        verbose_name = "flag state in an environment"
        verbose_name_plural = "flag states in environments"
        constraints = [
            models.UniqueConstraint(
                fields=["flag", "environment"], name="one_flag_state_per_environment"
            )
        ]

    def __str__(self) -> str:
        state = "on" if self.enabled else "off"
        return f"{self.flag.key}@{self.environment.slug}: {state}"

    def clean(self) -> None:
        names = self.flag.variant_names
        errors: dict[str, list[str]] = {}
        for field in ("off_variant", "default_variant"):
            problems = rules.check_variant(getattr(self, field), names, "the variant")
            if problems:
                errors[field] = problems
        try:
            self.rules = rules.validate_rules(self.rules, names)
        except rules.RulesError as exc:
            errors["rules"] = exc.messages
        if errors:
            raise ValidationError(errors)


class ToolGate(models.Model):
    """A tool of an agent that runtimes receive only when a boolean flag is on for the user.

    It lives beside versions, not in them: versions are immutable, and turning a tool on
    for 10 % of users must not need a new version.
    """

    agent = models.ForeignKey(Agent, on_delete=models.PROTECT, related_name="tool_gates")
    tool_name = models.CharField(max_length=64, validators=[tool_name_validator])
    # PROTECT: deleting the flag must not silently turn the tool on for everyone.
    flag = models.ForeignKey(Flag, on_delete=models.PROTECT, related_name="tool_gates")
    created_at = models.DateTimeField(auto_now_add=True)
    created_by_label = models.CharField(max_length=200, editable=False)
    updated_by_label = models.CharField(max_length=200, editable=False)

    history = HistoricalRecords()

    class Meta:
        ordering = ["agent__slug", "tool_name"]
        constraints = [
            models.UniqueConstraint(fields=["agent", "tool_name"], name="one_gate_per_agent_tool")
        ]

    def __str__(self) -> str:
        return f"{self.agent.slug}: {self.tool_name} ← {self.flag.key}"
