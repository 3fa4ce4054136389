"""Runtime API keys: one environment each, stored only as the SHA-256 of the full key.

The plaintext is shown once, at creation (docs/decisions/0005-api-key-hashing.md).

Invariants:
- A key's scope (its agents, `can_read`, `can_report`) is fixed at creation, like its
  environment: a different scope is a new key, and the old one is revoked (rotation).
  So the change feed's "key created / revoked" rows are the only scope changes.
- No agents means every agent of the environment (keys created before scopes existed).
"""

from django.db import models
from django.db.models import Q
from django.utils import timezone
from simple_history.models import HistoricalRecords

from agentconfig.models import Agent
from deployments.models.core import Environment


class ApiKey(models.Model):
    """A runtime's credential for one environment. Format: acfg_<key_id>_<secret>."""

    name = models.CharField(max_length=100)
    environment = models.ForeignKey(Environment, on_delete=models.PROTECT, related_name="api_keys")
    key_id = models.CharField(max_length=32, unique=True, editable=False)
    key_hash = models.CharField(max_length=64, editable=False)
    agents = models.ManyToManyField(
        Agent,
        blank=True,
        related_name="api_keys",
        help_text="The agents this key serves. Leave empty for every agent of its environment "
        "(as keys created before scopes). Fixed at creation: to change it, create a new key "
        "and revoke this one.",
    )
    can_read = models.BooleanField(
        default=True,
        help_text="May read configurations: the config endpoint and OFREP.",
    )
    can_report = models.BooleanField(
        default=True,
        help_text="May report outcomes (POST …/outcomes), which canary analysis acts on.",
    )
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
            ),
            # A key that may do nothing would only be a credential to leak.
            models.CheckConstraint(
                condition=Q(can_read=True) | Q(can_report=True),
                name="api_key_has_a_capability",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.environment.slug})"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None
