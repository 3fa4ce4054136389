"""Test settings: the same DATABASE_URL / CACHE_URL handling, fast hashing, a throwaway key."""

import os

from agentconfig.settings.base import *  # noqa: F403
from agentconfig.settings.base import DATA_DIR, cache_from_env, database_from_env

DEBUG = False
SECRET_KEY = "test-only-secret-key-not-used-anywhere-else-0123456789abcdef"  # noqa: S105
ALLOWED_HOSTS = ["testserver", "localhost", "127.0.0.1"]
DATABASES = {"default": database_from_env(DATA_DIR / "test.sqlite3")}
# One test database per process, so that two test runs on one machine never collide.
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # A file, not :memory:, so that threads in concurrency tests share one database.
    DATABASES["default"]["TEST"] = {"NAME": str(DATA_DIR / f"test-run-{os.getpid()}.sqlite3")}
else:
    DATABASES["default"]["TEST"] = {"NAME": f"test_agentconfig_{os.getpid()}"}
CACHES = {
    "default": {
        **cache_from_env("locmemcache://agentconfig-tests"),
        "KEY_PREFIX": "agentconfig-tests",
    }
}
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
# Serve static files from the app folders (no collectstatic before tests).
WHITENOISE_AUTOREFRESH = True
WHITENOISE_USE_FINDERS = True
