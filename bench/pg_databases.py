"""Create and drop the throwaway PostgreSQL databases the benchmarks run in.

Imported by the benchmark scripts (run as `.venv/bin/python bench/<script>.py`, so this
folder is on the path); each script checks the name contains "bench" before calling.
"""

from __future__ import annotations

import psycopg
from psycopg import sql


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
