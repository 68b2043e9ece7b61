"""The backend's HTTP surface: OTLP ingest, the trace API and the web viewer (Starlette).

Nothing blocking runs on the event loop: inflating, decoding and every database call go to
worker threads, each kind under its own limit, so a burst of ingests cannot take the threads
that ``/healthz`` and the API need.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any, TypeVar

import anyio
import anyio.to_thread
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .._trace import STATUSES, build_document
from . import otlp, retention
from .intake import Intake
from .limits import Limits
from .store import CursorError, SqlStore, StoreUnavailable
from .stores import open_store
from .viewer.routes import store_routes

MAX_LIST_LIMIT = 1000
RETRY_AFTER_SECONDS = 5

_log = logging.getLogger("agenttrace.server")
_T = TypeVar("_T")


def project_id(api_key: str) -> str:
    """The project an API key stands for; the key itself is never stored."""
    return hashlib.sha256(api_key.encode()).hexdigest()


def create_app(
    db: str,
    api_keys: Iterable[str],
    *,
    limits: Limits | None = None,
    retain_days: float | None = None,
) -> Starlette:
    """The ASGI app over the store named by ``db`` (an SQLite path or a PostgreSQL URL).

    Each API key is one project. Opens the store (creating or migrating its schema) now, so a
    database that cannot be used fails here, before the server listens.
    """
    key_projects = {key: project_id(key) for key in api_keys}
    projects = set(key_projects.values())
    if not projects:
        raise ValueError("the server needs at least one API key")
    store = open_store(db)
    api = _Api(store, projects, limits or Limits())

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            async with anyio.create_task_group() as background:
                if retain_days:
                    background.start_soon(retention.keep, store, retain_days, api.writes)
                yield
                background.cancel_scope.cancel()
        finally:
            # uvicorn has drained in-flight requests by now; every acknowledged write is committed.
            store.close()

    routes = [
        Route("/v1/traces", api.ingest, methods=["POST"]),
        Route("/api/v1/traces", api.list_traces, methods=["GET"]),
        Route("/api/v1/traces/{trace_id}", api.get_trace, methods=["GET"]),
        Route("/api/v1/traces/{trace_id}/events", api.get_events, methods=["GET"]),
        Route("/healthz", api.healthz, methods=["GET"]),
        # The web viewer (HTML pages; sign-in with a project's key): /, /runs/..., /diff, /signin
        *store_routes(store, key_projects),
    ]
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={
            HTTPException: _http_error,
            StoreUnavailable: _store_unavailable,
            Exception: _internal_error,
        },
    )
    app.state.store = store
    return app


def _error(status: int, message: str, *, close: bool = False, **headers: str) -> JSONResponse:
    if close:  # the rest of the body is unread: the connection cannot carry another request
        headers["Connection"] = "close"
    return JSONResponse(
        {"error": {"status": status, "message": message}}, status, headers=headers or None
    )


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return _error(exc.status_code, str(exc.detail), **dict(exc.headers or {}))


async def _store_unavailable(request: Request, exc: Exception) -> Response:
    # 503 with Retry-After: OTLP exporters and the Collector retry it (they drop a 500).
    _log.warning("database unavailable on %s %s: %s", request.method, request.url.path, exc)
    return _error(
        503, f"the database is unavailable: {exc}", **{"Retry-After": str(RETRY_AFTER_SECONDS)}
    )


async def _internal_error(request: Request, exc: Exception) -> Response:
    # Log the failure, never the request headers (they carry the API key).
    _log.error("internal error on %s %s: %r", request.method, request.url.path, exc)
    return _error(500, "internal server error; see the server log")


class _Api:
    def __init__(self, store: SqlStore, projects: set[str], limits: Limits) -> None:
        self.store = store
        self.projects = projects
        self.limits = limits
        self.writes = anyio.CapacityLimiter(store.write_concurrency)
        self.reads = anyio.CapacityLimiter(store.read_concurrency)
        self.health = anyio.CapacityLimiter(2)
        self.decoding = anyio.CapacityLimiter(max(2, os.cpu_count() or 2))
        self.intake = Intake(limits, self.decoding)

    def _project(self, request: Request) -> str:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise HTTPException(
                401,
                "missing API key: send 'Authorization: Bearer <api key>'",
                headers={"WWW-Authenticate": 'Bearer realm="agenttrace"'},
            )
        project = project_id(token.strip())
        if project not in self.projects:
            raise HTTPException(
                401,
                "unknown API key for this server",
                headers={"WWW-Authenticate": 'Bearer realm="agenttrace", error="invalid_token"'},
            )
        return project

    async def ingest(self, request: Request) -> Response:
        project = self._project(request)
        try:
            media = otlp.media_type(request.headers.get("content-type"))
            async with self.intake.body(request) as body:
                decoded = await _in_thread(
                    self.decoding,
                    otlp.decode,
                    body,
                    media,
                    self.limits.max_json_depth,
                )
                result = await _in_thread(
                    self.writes, self.store.ingest, project, decoded.spans, decoded.service_names
                )
        except otlp.PayloadError as exc:
            return _error(exc.status, exc.message, close=exc.body_unread)
        _log.debug(
            "ingested %d spans (%d duplicates) in %d traces",
            result.accepted,
            result.duplicates,
            result.traces,
        )
        media_out = otlp.JSON if media == otlp.JSON else otlp.PROTOBUF
        return Response(otlp.encode_response(decoded, media), 200, media_type=media_out)

    async def list_traces(self, request: Request) -> Response:
        project = self._project(request)
        params = request.query_params
        # one status, or several separated by commas (`pull --last-failure`: error,terminated,killed)
        status = [s.strip() for s in (params.get("status") or "").split(",") if s.strip()]
        if any(s not in STATUSES for s in status):
            return _error(
                400, f"status={params['status']!r} is not valid; choose from: {', '.join(STATUSES)}"
            )
        limit_text = params.get("limit", "50")
        if not limit_text.isdigit() or not 1 <= int(limit_text) <= MAX_LIST_LIMIT:
            return _error(
                400, f"limit={limit_text!r} must be an integer from 1 to {MAX_LIST_LIMIT}"
            )
        try:
            traces, cursor = await _in_thread(
                self.reads,
                lambda: self.store.list_traces(
                    project,
                    status=status or None,
                    limit=int(limit_text),
                    cursor=params.get("cursor") or None,
                ),
            )
        except CursorError as exc:
            return _error(400, str(exc))
        return await self._json({"traces": traces, "next_cursor": cursor})

    async def _document(self, request: Request) -> dict[str, Any]:
        project = self._project(request)
        trace_id = request.path_params["trace_id"].lower()
        if not otlp.is_hex_trace_id(trace_id):
            raise HTTPException(400, f"{trace_id!r} is not a trace id (32 hex digits)")
        spans = await _in_thread(self.reads, self.store.trace_spans, project, trace_id)
        if not spans:
            # Another project's trace looks exactly like a missing one.
            raise HTTPException(404, f"trace {trace_id} not found")
        return await _in_thread(self.reads, build_document, spans)

    async def get_trace(self, request: Request) -> Response:
        return await self._json(await self._document(request))

    async def get_events(self, request: Request) -> Response:
        document = await self._document(request)
        return await self._json({"trace_id": document["trace_id"], "events": document["events"]})

    async def _json(self, content: Any) -> Response:
        # A trace document can be tens of MB of JSON: rendered off the event loop too.
        return await _in_thread(self.reads, JSONResponse, content)

    async def healthz(self, request: Request) -> Response:
        await _in_thread(self.health, self.store.ping)
        return JSONResponse({"status": "ok"})


async def _in_thread(limiter: anyio.CapacityLimiter, fn: Callable[..., _T], *args: Any) -> _T:
    return await anyio.to_thread.run_sync(fn, *args, limiter=limiter)
