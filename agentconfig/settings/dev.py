"""Local development: DEBUG on, a fixed insecure key, the embedded SQLite database."""

from agentconfig.settings.base import *  # noqa: F403
from agentconfig.settings.base import env

DEBUG = env.bool("DEBUG", default=True)
# Only ever used on a developer's machine; production.py refuses to start without SECRET_KEY.
SECRET_KEY = env.str("SECRET_KEY", default="django-insecure-agentconfig-development-only")
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]"])
