"""System checks for settings that silently break a promise in production."""

from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Tags, Warning, register

# Every server process serves a committed change within one second (README, "The runtime
# endpoint"): one refresh interval plus the time of one feed query.
PROPAGATION_PROMISE_SECONDS = 1.0


@register(Tags.compatibility, deploy=True)
def check_refresh_interval(app_configs: Any, **kwargs: Any) -> list[CheckMessage]:
    """A refresh interval near or above a second breaks the propagation promise."""
    interval = settings.AGENTCONFIG_REFRESH_INTERVAL
    if not 0 <= interval <= PROPAGATION_PROMISE_SECONDS / 2:
        return [
            Warning(
                f"AGENTCONFIG_REFRESH_INTERVAL is {interval} s: server processes would serve a "
                "deploy, rollback or key revocation up to that long after it commits, which "
                f"breaks the promise of {PROPAGATION_PROMISE_SECONDS:g} s.",
                hint="Use a value between 0 and 0.5 (default 0.25).",
                id="agentconfig.W002",
            )
        ]
    return []
