"""Settings shared by every deployment; everything site-specific comes from the environment.

Variables (read with django-environ, also from a `.env` file in the project folder):
DATABASE_URL, SECRET_KEY, DEBUG, ALLOWED_HOSTS, CACHE_URL, CSRF_TRUSTED_ORIGINS, and the
EVAL_* variables of the evaluations section below.
"""

from datetime import timedelta
from pathlib import Path
from typing import Any

import environ
from csp.constants import NONE, SELF

BASE_DIR = Path(__file__).resolve().parent.parent.parent
DATA_DIR = BASE_DIR / "data"

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env")

DEBUG = env.bool("DEBUG", default=False)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=[])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "simple_history",
    # Sign-in throttling: failed attempts per (username, IP) in the database, lockouts.
    "axes",
    # Content-Security-Policy header on every admin page (system checks for its settings).
    "csp",
    "agentconfig",
    "versions",
    "deployments",
    "flags",
    # Evaluation suites, runs and the promotion gate (issue 6); runs execute in the
    # django-tasks database worker (`manage.py db_worker`).
    "django_tasks",
    "django_tasks_db",
    "evaluations",
    # The UI layer (admin pages across apps, timeline, demo data): the top of the imports.
    "agentconfig.site",
    # The management API (/api/v1/manage/): personal access tokens and the JSON endpoints;
    # "ninja" serves the API docs page from its own static files (no CDN).
    "ninja",
    "agentconfig.api",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "csp.middleware.CSPMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "simple_history.middleware.HistoryRequestMiddleware",
    # Last, as django-axes requires: turns a locked-out sign-in into the lockout page.
    # Runtime routes never reach it: delivery.wsgi bypasses MIDDLEWARE.
    "axes.middleware.AxesMiddleware",
]

# The axes backend comes first: it refuses a locked-out (username, IP) before any
# password is checked, so a lockout also stops a correct guess.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]

ROOT_URLCONF = "agentconfig.urls"
WSGI_APPLICATION = "agentconfig.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]


def database_from_env(default_sqlite: Path) -> dict:
    """DATABASE_URL, or the embedded SQLite file, with the options each backend needs."""
    db = env.db_url("DATABASE_URL", default=f"sqlite:///{default_sqlite}")
    if db["ENGINE"] == "django.db.backends.sqlite3":
        # SQLite has no row locks: IMMEDIATE takes the write lock when a transaction
        # starts, so concurrent writers queue (up to `timeout` seconds) instead of
        # failing with "database is locked" half-way through.
        db.setdefault("OPTIONS", {}).update({"transaction_mode": "IMMEDIATE", "timeout": 30})
    else:
        db.setdefault("CONN_MAX_AGE", env.int("CONN_MAX_AGE", default=60))
        db.setdefault("CONN_HEALTH_CHECKS", True)
        # An unreachable database host must fail fast: the runtime path then serves its
        # last snapshot instead of holding a worker for libpq's default (no timeout).
        db.setdefault("OPTIONS", {}).setdefault("connect_timeout", 5)
    return db


DATABASES = {"default": database_from_env(DATA_DIR / "agentconfig.sqlite3")}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"


def cache_from_env(default: str) -> dict:
    """CACHE_URL, with Django's Redis backend swapped for ours (agentconfig/cache.py)."""
    cache = env.cache_url("CACHE_URL", default=default)
    if cache["BACKEND"] == "django.core.cache.backends.redis.RedisCache":
        cache["BACKEND"] = "agentconfig.core.redis_cache.RedisCache"
        # A Redis that accepts connections but never answers must cost a short wait, not
        # a stuck worker (redis-py waits forever by default).
        options = cache.setdefault("OPTIONS", {})
        options.setdefault("socket_connect_timeout", env.float("CACHE_TIMEOUT", default=0.5))
        options.setdefault("socket_timeout", env.float("CACHE_TIMEOUT", default=0.5))
    return cache


CACHES = {"default": cache_from_env("locmemcache://agentconfig")}

AUTH_PASSWORD_VALIDATORS: list[dict[str, Any]] = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]

LOGIN_URL = "admin:login"

# --- the admin's defences (docs/security.md) ---------------------------------------
# Sign-in throttling (django-axes): AXES_FAILURE_LIMIT wrong passwords for one username
# from one address lock that pair out for AXES_COOLOFF_MINUTES; every failure during the
# lockout starts the cool-off again. Others (another user, another address) are not
# locked out, so a guesser cannot lock a colleague out from elsewhere. Admins unlock with
# `manage.py axes_reset_username <name>` (or axes_reset for everyone).
AXES_FAILURE_LIMIT = env.int("AXES_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = timedelta(minutes=env.int("AXES_COOLOFF_MINUTES", default=15))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = True
# A successful sign-in forgets the earlier typos of that pair.
AXES_RESET_ON_SUCCESS = True
# Attempts live in the database: shared by every process, kept across restarts, listed
# in the admin (Axes > Access attempts), and rolled back with each test.
AXES_HANDLER = "axes.handlers.database.AxesDatabaseHandler"
# Our lockout page (logged, with what to do) and the client address behind the proxy.
AXES_LOCKOUT_CALLABLE = "agentconfig.core.login_defence.lockout_response"
AXES_CLIENT_IP_CALLABLE = "agentconfig.core.login_defence.client_ip"
# No start-up banner: every manage.py command would print it (commands answer in one line).
AXES_VERBOSE = False
# Reverse proxies in front of the app that append the client's address to
# X-Forwarded-For. 0: the lockout uses REMOTE_ADDR (behind a proxy that is the proxy's
# address, so lockouts become per username). Never more than really exist: a client can
# write the rest of that header itself.
AGENTCONFIG_TRUSTED_PROXY_COUNT = env.int("TRUSTED_PROXY_COUNT", default=0)

# Content-Security-Policy (django-csp): only our own origin's files run, no inline
# script or style anywhere (templates load static/agentconfig/*.js and *.css), no plugin,
# no framing, forms post only to us. The runtime API (lean WSGI path) never gets here.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF],
        "img-src": [SELF, "data:"],
        "font-src": [SELF],
        "connect-src": [SELF],
        "object-src": [NONE],
        "base-uri": [SELF],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    }
}

# Undo goes through the rollback service (which logs who and why), never through
# simple-history's generic "revert to this revision" button.
SIMPLE_HISTORY_REVERT_DISABLED = True

# --- agentconfig -------------------------------------------------------------------
# Seconds a runtime may reuse a config response without asking again.
AGENTCONFIG_RUNTIME_MAX_AGE = env.int("AGENTCONFIG_RUNTIME_MAX_AGE", default=1)
# Seconds between two reads of the change feed by one server process (while it serves
# requests; an idle process reads nothing). Every process serves a committed change, and
# refuses a revoked key, at most this long after the commit (plus one query).
AGENTCONFIG_REFRESH_INTERVAL = env.float("AGENTCONFIG_REFRESH_INTERVAL", default=0.25)

# --- outbound calls (agentconfig/outbound.py) -----------------------------------------
# Every outbound URL (evaluation endpoints; webhooks and git remotes later) must be https
# without user:password@, and is called only at public addresses: loopback, private,
# link-local (the cloud metadata address), multicast and reserved ones are refused when
# the URL is saved and again when the worker connects, after resolving the name (so a
# DNS answer cannot change it in between). Entries are "host" (any port) or "host:port",
# IPv6 as "[::1]:8000".
# Hosts whose plain http:// is accepted and which may resolve to this machine or your
# network: a local model server in development (127.0.0.1:11434 for Ollama). Not in
# production: any service on a listed host becomes reachable for whoever edits a policy.
AGENTCONFIG_OUTBOUND_HTTP_HOSTS = env.list("AGENTCONFIG_OUTBOUND_HTTP_HOSTS", default=[])
# https hosts that may resolve to private addresses: a model server on your own network.
AGENTCONFIG_OUTBOUND_ALLOW_PRIVATE_HOSTS = env.list(
    "AGENTCONFIG_OUTBOUND_ALLOW_PRIVATE_HOSTS", default=[]
)

# --- evaluations -------------------------------------------------------------------
# The OpenAI-compatible Chat Completions endpoint that evaluation runs call (OpenAI,
# Azure OpenAI, vLLM, Ollama, llama.cpp...). Without a base URL, model-backed runs are
# refused with a message naming these variables; an environment's evaluation policy
# may name its own base URL and key variable instead (README, "Evaluations").
EVAL_API_BASE_URL = env.str("EVAL_API_BASE_URL", default="")
EVAL_API_KEY = env.str("EVAL_API_KEY", default="")
# The environment variables an evaluation policy may name as its key: a fixed list, so a
# policy can never make the worker send another variable (SECRET_KEY, DATABASE_URL, ...)
# as a bearer token. A policy's empty key field means EVAL_API_KEY, always allowed.
# E.g. EVAL_API_KEY_NAMES=EVAL_API_KEY,EVAL_API_KEY_PRODUCTION
EVAL_API_KEY_NAMES = env.list("EVAL_API_KEY_NAMES", default=["EVAL_API_KEY"])
# The LLM-as-judge model and its instructions (empty prompt: the built-in one).
EVAL_JUDGE_MODEL = env.str("EVAL_JUDGE_MODEL", default="gpt-4o-mini")
EVAL_JUDGE_PROMPT = env.str("EVAL_JUDGE_PROMPT", default="")
# How the judge is asked for JSON: json_object, json_schema, or none (servers without it).
EVAL_JUDGE_RESPONSE_FORMAT = env.str("EVAL_JUDGE_RESPONSE_FORMAT", default="json_object")
# Calls in flight at once per run, seconds per call, and retries (with backoff) on
# timeouts, 429 and 5xx.
EVAL_CONCURRENCY = env.int("EVAL_CONCURRENCY", default=4)
EVAL_TIMEOUT_SECONDS = env.float("EVAL_TIMEOUT_SECONDS", default=60.0)
EVAL_MAX_RETRIES = env.int("EVAL_MAX_RETRIES", default=3)
# Background work: the database queue of django-tasks, processed by `manage.py db_worker`.
TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend", "QUEUES": ["default"]}}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
}
