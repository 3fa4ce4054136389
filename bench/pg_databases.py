"""Create and drop the throwaway PostgreSQL databases the benchmarks run in.

Imported by the benchmark scripts (run as `.venv/bin/python bench/<script>.py`, so this
folder is on the path); each script checks the name contains "bench" before calling.
"""

from __future__ import annotations

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
