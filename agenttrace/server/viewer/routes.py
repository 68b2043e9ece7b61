"""The viewer's endpoints: server-rendered pages (Jinja2, autoescaped), downloads, sign-in.

Every page is rendered on a worker thread (a trace can be tens of MB) under the viewer's own
limit, so pages never hold up ingest or ``/healthz``. Any failure becomes an HTML page with a
reason: bad input (a corrupt trace, an unknown event kind, a missing field) is rendered as what
could be read, with a note, never as a 500.
"""

from __future__ import annotations

import functools
import logging
import urllib.parse
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import anyio
import anyio.to_thread
import jinja2
import markupsafe
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from ... import _trace
from ..._console import duration, tokens, usd
from ..._diff import Comparison, Pair, compare
from ..._edits import MARKER
from ..._outline import EventLine, outline, summarize
from ..store import CursorError, SqlStore, StoreUnavailable
from . import access as _access
from .detail import event_detail, part_content
from .sources import RunSource, StoreCache, StoreRuns, UnreadableRun
from .waterfall import waterfall

logger = logging.getLogger("agenttrace.server")

PAGE_SIZE = 50
MAX_PAGE_SIZE = 200
MAX_FORM_BYTES = 8192
FOLD_EQUAL_AT = 8  # a run of this many equal calls in a diff folds into one row

# Only the package's own script and stylesheet; no inline script or style, no framing, no
# form posting elsewhere. A trace's text can never become code here.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
# same-origin, not no-referrer: with no-referrer, browsers send "Origin: null" on the
# sign-in form, and the form check could no longer tell this site from another.
_PAGE_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
_DOWNLOAD_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; sandbox",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def _marked(value: Any) -> markupsafe.Markup:
    """Escaped text with every redaction marker highlighted."""
    pieces = str(value if value is not None else "").split(MARKER)
    mark = markupsafe.Markup('<mark class="redacted">') + MARKER + markupsafe.Markup("</mark>")
    return mark.join(markupsafe.escape(piece) for piece in pieces)


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("agenttrace.server.viewer", "templates"),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        marked=_marked,
        duration=duration,
        usd=usd,
        tokens=tokens,
        quote=lambda value: urllib.parse.quote(str(value), safe=""),
    )
    env.globals.update(MARKER=MARKER)
    return env


def viewer_routes(access: _access.Access) -> list[BaseRoute]:
    """The viewer's routes, reading through ``access``."""
    viewer = _Viewer(access)
    routes: list[BaseRoute] = [
        Route("/", viewer.runs_page, methods=["GET"]),
        Route("/runs/{run_id}", viewer.run_page, methods=["GET"]),
        Route("/runs/{run_id}/download", viewer.download, methods=["GET"]),
        Route("/runs/{run_id}/events/{seq}", viewer.event_pane, methods=["GET"]),
        Route("/runs/{run_id}/events/{seq}/{part}", viewer.event_part, methods=["GET"]),
        Route("/diff", viewer.diff_page, methods=["GET"]),
        Mount("/static", StaticFiles(packages=[("agenttrace.server.viewer", "static")])),
    ]
    if access.signs_in:
        routes += [
            Route("/signin", viewer.signin, methods=["GET", "POST"]),
            Route("/signout", viewer.signout, methods=["POST"]),
        ]
    return routes


def store_routes(store: SqlStore, projects: Mapping[str, str]) -> list[BaseRoute]:
    """The backend's viewer: each API key (``projects``: key -> project) reads its project."""
    cache = StoreCache()
    return viewer_routes(
        _access.KeyAccess(projects, lambda project: StoreRuns(store, project, cache))
    )


_Handler = Callable[[Any, Request], Awaitable[Response]]


def _page(handler: _Handler) -> _Handler:
    """Security headers on every response, and an HTML page instead of any failure."""

    @functools.wraps(handler)
    async def guarded(self: _Viewer, request: Request) -> Response:
        try:
            response = await handler(self, request)
        except StoreUnavailable as exc:
            logger.warning("viewer: database unavailable on %s: %s", request.url.path, exc)
            response = self.message(request, "The database is unavailable", str(exc), 503)
            response.headers["Retry-After"] = "5"
        except Exception as exc:
            logger.error("viewer: internal error on %s: %r", request.url.path, exc, exc_info=True)
            response = self.message(
                request, "Something went wrong", "internal error; see the server log", 500
            )
        extra = _DOWNLOAD_HEADERS if "content-disposition" in response.headers else _PAGE_HEADERS
        for name, value in extra.items():
            response.headers.setdefault(name, value)
        _access.keep_csrf(response, request)
        return response

    return guarded


def _reading(handler: Callable[..., Response]) -> _Handler:
    """An endpoint that reads runs: ``handler(self, request, source)`` runs on a worker thread
    once the request has a source (else the reader is sent to sign in)."""

    @_page
    @functools.wraps(handler)
    async def endpoint(self: _Viewer, request: Request) -> Response:
        source = self.reader(request)
        if isinstance(source, Response):
            return source
        return await anyio.to_thread.run_sync(handler, self, request, source, limiter=self.work)

    return endpoint


def _run(handler: Callable[..., Response]) -> _Handler:
    """An endpoint about one run: ``handler(self, request, source, run_id, document)``."""

    @functools.wraps(handler)
    def with_document(self: _Viewer, request: Request, source: RunSource) -> Response:
        run_id = request.path_params["run_id"]
        document = self.load(source, request, run_id)
        if isinstance(document, Response):
            return document
        return handler(self, request, source, run_id, document)

    return _reading(with_document)


def _event(document: Mapping[str, Any], seq: int | None) -> Mapping[str, Any] | None:
    return next((e for e in document.get("events") or () if e.get("seq") == seq), None)


class _Viewer:
    def __init__(self, access: _access.Access) -> None:
        self.access = access
        self.env = _environment()
        self.work = anyio.CapacityLimiter(4)

    # -- rendering ------------------------------------------------------------------------------

    def html(self, request: Request, template: str, code: int = 200, **context: Any) -> Response:
        context.update(
            signs_in=self.access.signs_in,
            signed_in=self.access.signs_in and self.access.source(request) is not None,
            csrf=_access.csrf_token(request),
            path=request.url.path,
        )
        return HTMLResponse(self.env.get_template(template).render(**context), code)

    def message(self, request: Request, title: str, text: str, code: int) -> Response:
        return self.html(request, "message.html", code, title=title, text=text)

    def reader(self, request: Request) -> RunSource | Response:
        """The request's source, or where to go first (the sign-in page)."""
        source = self.access.source(request)
        if source is not None:
            return source
        if request.url.path.startswith("/runs/") and "/events/" in request.url.path:
            return self.message(request, "Signed out", "sign in again to read this run", 401)
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse("/signin?" + urllib.parse.urlencode({"next": target}), 303)

    def load(self, source: RunSource, request: Request, run_id: str) -> dict[str, Any] | Response:
        try:
            document = source.document(run_id)
        except UnreadableRun as exc:
            return self.message(request, "This run cannot be read", str(exc), 422)
        if document is None:
            where = " in this project" if self.access.signs_in else ""
            return self.message(request, "No such run", f"there is no run {run_id}{where}", 404)
        return document

    # -- pages ----------------------------------------------------------------------------------

    @_reading
    def runs_page(self, request: Request, source: RunSource) -> Response:
        params = request.query_params
        status = params.get("status") or None
        limit = _int(params.get("limit"), PAGE_SIZE, 1, MAX_PAGE_SIZE)
        notes = []
        try:
            page = source.runs(status=status, cursor=params.get("cursor") or None, limit=limit)
        except CursorError:
            notes.append("That page link is out of date; here are the newest runs.")
            page = source.runs(status=status, limit=limit)
        notes += [f"skipped: {reason}" for reason in page.skipped]
        statuses = list(source.statuses)
        if status and status not in statuses:
            statuses.append(status)
        return self.html(
            request,
            "runs.html",
            page=page,
            status=status,
            statuses=statuses,
            limit=limit,
            notes=notes,
            first_page=not params.get("cursor"),
        )

    @_run
    def run_page(
        self, request: Request, source: RunSource, run_id: str, document: dict[str, Any]
    ) -> Response:
        every_row = request.query_params.get("all") == "1"
        selected = _int(request.query_params.get("event"), None)
        view = outline(document)
        return self.html(
            request,
            "run.html",
            run_id=run_id,
            view=view,
            fall=waterfall(document, view, every_row=every_row),
            every_row=every_row,
            pane=self._pane(document, selected) if selected is not None else None,
            selected=selected,
            redactions=sum(line.redactions for line in view.events),
            others=[r for r in source.runs(limit=20).runs if r.run_id != run_id],
        )

    def _pane(self, document: Mapping[str, Any], seq: int) -> Any:
        event = _event(document, seq)
        if event is None:
            return None
        at = _trace.parse_time((document.get("run") or {}).get("started_at"))
        line: EventLine = summarize(event, at)
        return event_detail(event, line)

    @_run
    def event_pane(
        self, request: Request, source: RunSource, run_id: str, document: dict[str, Any]
    ) -> Response:
        seq = _int(request.path_params["seq"], None)
        pane = self._pane(document, seq) if seq is not None else None
        if pane is None:
            return self.message(request, "No such event", f"run {run_id} has no event #{seq}", 404)
        return self.html(request, "_event.html", pane=pane, run_id=run_id)

    @_run
    def event_part(
        self, request: Request, source: RunSource, run_id: str, document: dict[str, Any]
    ) -> Response:
        part = request.path_params["part"]
        seq = _int(request.path_params["seq"], None)
        event = _event(document, seq)
        content = part_content(event, part) if event is not None else None
        if content is None:
            return self.message(request, "Nothing to download", f"event #{seq} has no {part}", 404)
        data, media, suffix = content
        return _attachment(data, media, f"{_file_stem(document, run_id)}-{seq}-{part}.{suffix}")

    @_run
    def download(
        self, request: Request, source: RunSource, run_id: str, document: dict[str, Any]
    ) -> Response:
        data = (_trace.dumps(document) + "\n").encode("utf-8")
        return _attachment(data, "application/json", f"{_file_stem(document, run_id)}.json")

    @_reading
    def diff_page(self, request: Request, source: RunSource) -> Response:
        params = request.query_params
        picked = params.getlist("run")
        if picked and not params.get("a"):  # the runs list's checkboxes
            if len(picked) != 2:
                return self.message(
                    request, "Pick two runs", "tick exactly two runs to compare them", 400
                )
            query = urllib.parse.urlencode({"a": picked[0], "b": picked[1]})
            return RedirectResponse(f"/diff?{query}", 303)
        a, b = params.get("a") or "", params.get("b") or ""
        if not a or not b:
            return self.message(request, "Pick two runs", "compare with /diff?a=RUN&b=RUN", 400)
        document_a = self.load(source, request, a)
        if isinstance(document_a, Response):
            return document_a
        document_b = self.load(source, request, b)
        if isinstance(document_b, Response):
            return document_b
        comparison = compare(document_a, document_b, a, b)
        return self.html(
            request,
            "diff.html",
            a=a,
            b=b,
            comparison=comparison,
            rows=_diff_rows(comparison),
            counts=comparison.counts(),
        )

    # -- signing in -----------------------------------------------------------------------------

    @_page
    async def signin(self, request: Request) -> Response:
        assert isinstance(self.access, _access.KeyAccess)
        if request.method == "GET":
            next_path = _local_path(request.query_params.get("next"))
            return self.html(request, "signin.html", next_path=next_path, error=None)
        form = await _form(request)
        next_path = _local_path(form.get("next"))
        refusal = _access.form_refusal(request, form)
        if refusal is not None:
            return self.html(request, "signin.html", 403, next_path=next_path, error=refusal)
        token = self.access.sign_in(form.get("api_key") or "")
        if token is None:
            return self.html(
                request,
                "signin.html",
                401,
                next_path=next_path,
                error="that is not an API key of this server",
            )
        response = RedirectResponse(next_path, 303)
        _access.set_session(response, request, token)
        return response

    @_page
    async def signout(self, request: Request) -> Response:
        form = await _form(request)
        refusal = _access.form_refusal(request, form)
        if refusal is not None:
            return self.message(request, "Not signed out", refusal, 403)
        response = RedirectResponse("/signin", 303)
        _access.clear_session(response, request)
        return response


# -- helpers --------------------------------------------------------------------------------------


def _int(value: Any, default: Any, low: int | None = None, high: int | None = None) -> Any:
    try:
        number = int(str(value))
    except (TypeError, ValueError):
        return default
    if (low is not None and number < low) or (high is not None and number > high):
        return default
    return number


def _local_path(value: str | None) -> str:
    """Where to go after signing in: a path on this server, never another site."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/"
    return value


async def _form(request: Request) -> dict[str, str]:
    """An urlencoded form (the sign-in form is tiny; a larger body is refused unread)."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            return {}
    fields = urllib.parse.parse_qs(body.decode("utf-8", "replace"), max_num_fields=20)
    return {name: values[0] for name, values in fields.items()}


def _file_stem(document: Mapping[str, Any], run_id: str) -> str:
    stem = str(document.get("trace_id") or run_id)
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in stem)[:100] or "trace"


def _attachment(data: bytes, media: str, name: str) -> Response:
    return Response(
        data,
        media_type=media,
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


def _diff_rows(comparison: Comparison) -> list[dict[str, Any]]:
    """The aligned calls side by side; long runs of equal calls fold into one row."""
    rows: list[dict[str, Any]] = []
    pairs = comparison.pairs
    first = comparison.first_divergence
    index = 0
    while index < len(pairs):
        end = index
        while end < len(pairs) and pairs[end].op == "equal":
            end += 1
        if end - index >= FOLD_EQUAL_AT:
            rows += [_diff_row(p, first) for p in pairs[index : index + 2]]
            rows.append({"op": "fold", "count": end - index - 3})
            rows.append(_diff_row(pairs[end - 1], first))
            index = end
            continue
        rows += [_diff_row(p, first) for p in pairs[index : max(end, index + 1)]]
        index = max(end, index + 1)
    return rows


def _diff_row(pair: Pair, first: Pair | None) -> dict[str, Any]:
    return {
        "op": pair.op,
        "a": summarize(pair.a) if pair.a is not None else None,
        "b": summarize(pair.b) if pair.b is not None else None,
        "differences": [*pair.request, *pair.answer],
        "more": pair.more,
        "first": pair is first,
    }
