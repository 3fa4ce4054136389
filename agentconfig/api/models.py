"""Personal access tokens: how scripts, CI pipelines and tools act as a user through the API.

Invariants:
- Only the SHA-256 hash of a token is stored; the plaintext is shown once, at creation.
- A token's prefix (`acp_`) differs from a runtime key's (`acfg_`): neither endpoint
  accepts the other's credential.
- Tokens are created and revoked by agentconfig.api.services.tokens only; the history
  (simple-history, without the hash) records who did each and why.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone
from simple_history.models import HistoricalRecords


class PersonalAccessToken(models.Model):
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="access_tokens"
    )
    name = models.CharField(max_length=100, help_text="What uses it, e.g. 'ci-release-job'.")
    # The public part of the token (acp_<key_id>_<secret>): shown in lists to tell tokens apart.
    key_id = models.CharField(max_length=12, unique=True)
    key_hash = models.CharField(max_length=64)
    read_only = models.BooleanField(
        default=False, help_text="Refused on every request that would change something."
    )
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_by_label = models.CharField(max_length=200, blank=True)
    history = HistoricalRecords(excluded_fields=["key_hash", "last_used_at"])

    class Meta:
        verbose_name = "personal access token"
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["user", "name"],
                condition=Q(revoked_at__isnull=True),
                name="one_active_token_per_user_and_name",
            )
        ]

    def __str__(self) -> str:
        return f"{self.name} (acp_{self.key_id}_…)"

    @property
    def is_expired(self) -> bool:
        return self.expires_at is not None and self.expires_at <= timezone.now()

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None and not self.is_expired
