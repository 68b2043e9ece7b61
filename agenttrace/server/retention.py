"""Retention: delete traces whose latest span arrived more than N days ago, a batch at a time.

Each batch is one short transaction and the loop pauses between batches, so ingest (which
needs the same write lock in SQLite, the same rows in PostgreSQL) is never held up for long.
Replicas sharing a PostgreSQL database may all prune: each skips the rows another holds.
"""

from __future__ import annotations

import logging
import time

import anyio
import anyio.to_thread

from .store import PruneResult, SqlStore, StoreUnavailable

BATCH_TRACES = 500
PAUSE_SECONDS = 0.05
PASS_INTERVAL_SECONDS = 3600

_log = logging.getLogger("agenttrace.server")


async def prune(
    store: SqlStore, retain_days: float, limiter: anyio.CapacityLimiter | None = None
) -> PruneResult:
    """One pass: every trace last written to before ``retain_days`` ago, in batches."""
    cutoff = time.time() - retain_days * 86400
    traces = spans = 0
    while True:
        batch = await anyio.to_thread.run_sync(store.prune, cutoff, BATCH_TRACES, limiter=limiter)
        traces, spans = traces + batch.traces, spans + batch.spans
        if batch.traces < BATCH_TRACES:
            return PruneResult(traces=traces, spans=spans)
        await anyio.sleep(PAUSE_SECONDS)


async def keep(store: SqlStore, retain_days: float, limiter: anyio.CapacityLimiter) -> None:
    """Prune now and then every hour, until cancelled (at shutdown)."""
    while True:
        try:
            done = await prune(store, retain_days, limiter)
        except StoreUnavailable as exc:
            _log.warning("retention: pruning failed, will retry: %s", exc)
        else:
            if done.traces:
                _log.info(
                    "retention: deleted %d traces (%d spans) older than %g days",
                    done.traces,
                    done.spans,
                    retain_days,
                )
        await anyio.sleep(PASS_INTERVAL_SECONDS)
