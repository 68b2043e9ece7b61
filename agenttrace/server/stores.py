"""Which store ``--db`` names (kept apart from the shared store logic the backends build on)."""

from __future__ import annotations

from .store import POSTGRES_SCHEMES, SqlStore


def open_store(db: str) -> SqlStore:
    """The store named by ``--db``: a PostgreSQL URL, else an SQLite file path."""
    if db.startswith(POSTGRES_SCHEMES):
        from .postgres_store import PostgresStore

        return PostgresStore(db)
    from .sqlite_store import SqliteStore

    return SqliteStore(db)
