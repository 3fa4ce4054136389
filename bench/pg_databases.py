"""Create and drop the throwaway PostgreSQL databases the benchmarks run in, and the
environment the project's settings are read from in a run.

Imported by the benchmark scripts (run as `.venv/bin/python bench/<script>.py`, so this
folder is on the path); each script checks the name contains "bench" before calling.
"""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

try:
    # psycopg comes with the project's virtualenv.
    import psycopg
    from psycopg import sql
except ImportError as exc:  # pragma: no cover - depends on how the script is started
    _SCRIPT = f"bench/{Path(sys.argv[0]).name}"
    sys.exit(
        f"{_SCRIPT} needs the project's virtualenv ({exc}). Run it as: .venv/bin/python {_SCRIPT}"
    )

# The only hosts a benchmark may contact.
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
# The reason for releasing to production without approvals in a bench database.
BREAK_GLASS = "bench: throwaway benchmark database"
# Settings read from the environment that must not leak from the caller's shell into a run.
SETTINGS_VARIABLES = (
    "DJANGO_SETTINGS_MODULE",
    "DATABASE_URL",
    "SECRET_KEY",
    "DEBUG",
    "ALLOWED_HOSTS",
    "CACHE_URL",
    "CACHE_TIMEOUT",
    "CSRF_TRUSTED_ORIGINS",
    "CONN_MAX_AGE",
    "LOG_LEVEL",
)
SETTINGS_PREFIXES = ("AGENTCONFIG_", "SECURE_", "EVAL_", "GRANIAN_", "GUNICORN_", "BENCH_")


def clean_environ() -> dict[str, str]:
    """The caller's environment without anything the project's settings would read."""
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in SETTINGS_VARIABLES and not name.startswith(SETTINGS_PREFIXES)
    }
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def production_env(database_url: str) -> dict[str, str]:
    """Production settings as the brief deploys them: no CACHE_URL, plain HTTP on loopback."""
    return {
        **clean_environ(),
        "DJANGO_SETTINGS_MODULE": "agentconfig.settings.production",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "SECURE_SSL_REDIRECT": "false",
        "DATABASE_URL": database_url,
        "LOG_LEVEL": "WARNING",
    }


def bench_database_url(admin_url: str, name: str) -> str:
    """`admin_url` pointed at the database `name` on the same server."""
    parts = urlsplit(admin_url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, ""))


def recreate_database(admin_url: str, name: str) -> None:
    with psycopg.connect(admin_url, autocommit=True, connect_timeout=5) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def drop_database(admin_url: str, name: str) -> None:
    with psycopg.connect(admin_url, autocommit=True, connect_timeout=5) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
