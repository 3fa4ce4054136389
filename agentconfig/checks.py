"""System checks for settings that silently break a promise in production."""

from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Tags, Warning, register

PER_PROCESS_CACHES = (
    "django.core.cache.backends.locmem.LocMemCache",
    "django.core.cache.backends.dummy.DummyCache",
)


@register(Tags.caches, deploy=True)
def check_shared_cache(app_configs: Any, **kwargs: Any) -> list[CheckMessage]:
    """A per-process cache cannot carry a deploy to the other server processes."""
    backend = settings.CACHES.get("default", {}).get("BACKEND", "")
    if backend in PER_PROCESS_CACHES:
        return [
            Warning(
                f"CACHE_URL selects {backend.rsplit('.', 1)[-1]}, which each server process "
                "keeps for itself: a deploy or rollback reaches the other processes only when "
                "their cached runtime documents expire (AGENTCONFIG_RUNTIME_CACHE_TTL).",
                hint="Set CACHE_URL=redis://host:6379/0 so every process shares one cache.",
                id="agentconfig.W001",
            )
        ]
    return []
