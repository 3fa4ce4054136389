"""The Agent (the thing whose configuration is versioned and deployed), the change feed,
and the audit record of governance changes."""

from typing import TYPE_CHECKING

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models
from django.urls import reverse
from django.utils import timezone
from simple_history.models import HistoricalRecords

from agentconfig.core.append_only import AppendOnlyModel

if TYPE_CHECKING:
    from django.contrib.auth.models import User

SLUG_PATTERN = r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$"
slug_validator = RegexValidator(
    SLUG_PATTERN,
    "Use 1-64 lowercase letters, digits and hyphens, starting and ending with a letter or "
    "digit (for example 'support-bot').",
)


def person_field() -> "models.ForeignKey[User | None, User | None]":
    """A user a row names (who did it, or whom it concerns): optional (the system acts
    too), kept while rows name them (PROTECT), and no reverse accessor on the user."""
    return models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )


class Agent(models.Model):
    slug = models.CharField(
        max_length=64,
        unique=True,
        validators=[slug_validator],
        help_text="Used in URLs and file names, e.g. support-bot. Cannot be changed later.",
    )
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    history = HistoricalRecords()

    class Meta:
        ordering = ["slug"]

    def __str__(self) -> str:
        return self.slug

    def get_absolute_url(self) -> str:
        return reverse("admin:agentconfig_agent_change", args=[self.pk])


class ChangeTopic(models.TextChoices):
    AGENT = "agent", "agent (pointer, canary)"
    FLAGS = "flags", "flags and tool gates"
    API_KEY = "api_key", "API key"


class Change(models.Model):
    """One committed write that changes what runtimes or OFREP clients receive.

    The change feed (agentconfig.core.change_feed): every such write inserts its row in the
    same transaction, so a change never commits without its row and a row never exists
    for a rolled-back write. Server processes read the feed to drop exactly what changed.
    Rows are never updated.
    """

    id = models.BigAutoField(primary_key=True)
    topic = models.CharField(max_length=16, choices=ChangeTopic.choices)
    # What changed: the agent (pointer, canary, agent-scoped flags and gates), the
    # environment (None: every environment), the API key's public id.
    agent = models.ForeignKey(
        Agent, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    # Environments live in a higher app (deployments); the feed is the base layer, so the
    # id is kept without a foreign key (environments are never deleted: PROTECT).
    environment_id = models.BigIntegerField(null=True, blank=True)
    api_key_id = models.CharField(max_length=32, blank=True)
    # PostgreSQL: the writing transaction's id (pg_current_xact_id), which lets readers
    # see rows whose ids were assigned before they committed. NULL on SQLite, whose
    # writers are serialised, so ids are assigned in commit order.
    transaction_id = models.BigIntegerField(null=True, blank=True, db_index=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = "runtime change"

    def __str__(self) -> str:
        return f"#{self.pk} {self.topic}"


class AuditAction(models.TextChoices):
    ENVIRONMENT_SETTINGS = "environment_settings", "environment settings changed"
    CANARY_POLICY = "canary_policy", "canary policy changed"
    EVALUATION_POLICY = "evaluation_policy", "evaluation policy changed"
    API_KEY_CREATED = "api_key_created", "API key created"
    API_KEY_REVOKED = "api_key_revoked", "API key revoked"
    ROLES_CHANGED = "roles_changed", "roles changed"
    USER_CREATED = "user_created", "user created"


class AuditRecord(AppendOnlyModel):
    """A change to what governs releases, which no other log holds: an environment's
    approval rules, canary and evaluation policies, API keys, people's roles.

    Written by the service that makes the change, in its transaction; read by the audit
    timeline. Append-only (model, queryset and, on PostgreSQL, a trigger).
    """

    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    action = models.CharField(max_length=32, choices=AuditAction.choices)
    actor = person_field()
    actor_label = models.CharField(max_length=200)
    reason = models.TextField()
    # What it concerns: an environment (id: environments live in a higher app, and are
    # never deleted), a person, and a label for either ("production", "key runtime-eu").
    environment_id = models.BigIntegerField(null=True, blank=True, db_index=True)
    subject_user = person_field()
    subject_label = models.CharField(max_length=200)
    before = models.JSONField(default=dict, blank=True)
    after = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.get_action_display()}: {self.subject_label} by {self.actor_label}"
