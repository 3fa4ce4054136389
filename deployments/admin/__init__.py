"""The deployments app's admin, one module per models module (deployments.models).

Importing the package registers every ModelAdmin (Django's admin autodiscover imports
`deployments.admin`):
- core: environments, pointers, the release log;
- canary: canary policies, rollouts and decisions;
- api_keys: runtime API keys.
The pages an agent's admin page links to live here too: release_pages (deploy, roll
back), canary_pages (start, advance, promote, abort, re-size), what those pages and the
request pages share (agent_pages: target, rendering, stale confirmations) and
canary_panels (the running canaries shown on the agent page). governed holds the bases
of the governed settings' admins (environments, canary and evaluation policies).
"""

from deployments.admin import api_keys, canary, core

__all__ = ["api_keys", "canary", "core"]
