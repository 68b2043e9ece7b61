"""The backend's HTTP surface: OTLP ingest and the trace API (Starlette)."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
from collections.abc import AsyncIterator, Iterable
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .._trace import STATUSES, build_document
from . import otlp
from .store import CursorError, Store

DEFAULT_MAX_REQUEST_BYTES = 32 * 1024 * 1024
MAX_LIST_LIMIT = 1000

_log = logging.getLogger("agenttrace.server")


def project_id(api_key: str) -> str:
    """The project an API key stands for; the key itself is never stored."""
    return hashlib.sha256(api_key.encode()).hexdigest()


def create_app(
    db_path: str | os.PathLike[str],
    api_keys: Iterable[str],
    *,
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
) -> Starlette:
    """The ASGI app. Each API key is one project; ``max_request_bytes`` bounds a decompressed body."""
    projects = {project_id(key) for key in api_keys}
    if not projects:
        raise ValueError("the server needs at least one API key")
    store = Store(db_path)
    api = _Api(store, projects, max_request_bytes)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            # uvicorn has drained in-flight requests by now; every acknowledged write is committed.
            store.close()

    routes = [
        Route("/v1/traces", api.ingest, methods=["POST"]),
        Route("/api/v1/traces", api.list_traces, methods=["GET"]),
        Route("/api/v1/traces/{trace_id}", api.get_trace, methods=["GET"]),
        Route("/api/v1/traces/{trace_id}/events", api.get_events, methods=["GET"]),
        Route("/healthz", api.healthz, methods=["GET"]),
    ]
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={HTTPException: _http_error, Exception: _internal_error},
    )
    app.state.store = store
    return app


def _error(status: int, message: str, **headers: str) -> JSONResponse:
    return JSONResponse(
        {"error": {"status": status, "message": message}}, status, headers=headers or None
    )


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return _error(exc.status_code, str(exc.detail), **dict(exc.headers or {}))


async def _internal_error(request: Request, exc: Exception) -> Response:
    # Log the failure, never the request headers (they carry the API key).
    _log.error("internal error on %s %s: %r", request.method, request.url.path, exc)
    return _error(500, "internal server error; see the server log")


class _Api:
    def __init__(self, store: Store, projects: set[str], max_request_bytes: int) -> None:
        self.store = store
        self.projects = projects
        self.max_request_bytes = max_request_bytes

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
            body = await self._read_body(request)
            decoded = await run_in_threadpool(
                _decode,
                body,
                request.headers.get("content-encoding"),
                media,
                self.max_request_bytes,
            )
        except otlp.PayloadError as exc:
            return _error(exc.status, exc.message)
        result = await run_in_threadpool(
            self.store.ingest, project, decoded.spans, decoded.service_names
        )
        _log.debug(
            "ingested %d spans (%d duplicates) in %d traces",
            result.accepted,
            result.duplicates,
            result.traces,
        )
        media_out = otlp.JSON if media == otlp.JSON else otlp.PROTOBUF
        return Response(otlp.encode_response(decoded, media), 200, media_type=media_out)

    async def _read_body(self, request: Request) -> bytes:
        limit = self.max_request_bytes
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limit:
            raise otlp.PayloadError(
                413, f"request body of {declared} bytes exceeds the {limit}-byte limit"
            )
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise otlp.PayloadError(413, f"request body exceeds the {limit}-byte limit")
            chunks.append(chunk)
        return b"".join(chunks)

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
            traces, cursor = await run_in_threadpool(
                self.store.list_traces,
                project,
                status=status or None,
                limit=int(limit_text),
                cursor=params.get("cursor") or None,
            )
        except CursorError as exc:
            return _error(400, str(exc))
        return JSONResponse({"traces": traces, "next_cursor": cursor})

    async def _document(self, request: Request) -> dict[str, Any]:
        project = self._project(request)
        trace_id = request.path_params["trace_id"].lower()
        if not otlp.is_hex_trace_id(trace_id):
            raise HTTPException(400, f"{trace_id!r} is not a trace id (32 hex digits)")
        spans = await run_in_threadpool(self.store.trace_spans, project, trace_id)
        if not spans:
            # Another project's trace looks exactly like a missing one.
            raise HTTPException(404, f"trace {trace_id} not found")
        return await run_in_threadpool(build_document, spans)

    async def get_trace(self, request: Request) -> Response:
        return JSONResponse(await self._document(request))

    async def get_events(self, request: Request) -> Response:
        document = await self._document(request)
        return JSONResponse({"trace_id": document["trace_id"], "events": document["events"]})

    async def healthz(self, request: Request) -> Response:
        await run_in_threadpool(self.store.ping)
        return JSONResponse({"status": "ok"})


def _decode(body: bytes, encoding: str | None, media: str, limit: int) -> otlp.Batch:
    return otlp.decode(otlp.decompress(body, encoding, limit), media)
