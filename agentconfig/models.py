"""The Agent: the thing whose configuration is versioned and deployed."""

from django.core.validators import RegexValidator
from django.db import models
from django.urls import reverse
from simple_history.models import HistoricalRecords

SLUG_PATTERN = r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$"
slug_validator = RegexValidator(
    SLUG_PATTERN,
    "Use 1-64 lowercase letters, digits and hyphens, starting and ending with a letter or "
    "digit (for example 'support-bot').",
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
