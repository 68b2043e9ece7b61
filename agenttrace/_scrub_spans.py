"""Scrub finished spans once, before any exporter sees them, whoever created them.

Our own event payloads are redacted when recorded; this is for everything else on a span: the
raw ``url.full`` / ``http.url`` that stock instrumentations (``opentelemetry-instrumentation-
requests``) put on their spans, captured headers (``http.request.header.authorization``), status
descriptions and exception events carrying an error message.

:class:`ScrubbingSpanProcessor` sits in front of every exporter of a session — local store,
backend, the user's collector — with the session's redactor passed in (Logfire's processor
wrapper is the model). ``on_end`` hands processors an immutable ``ReadableSpan``, so scrubbing
means rebuilding it: :func:`scrub_span` returns a copy, or the span itself when nothing needed
scrubbing (the common case, so clean spans cost no allocation).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry.attributes import BoundedAttributes
from opentelemetry.context import Context
from opentelemetry.sdk.trace import Event, ReadableSpan, Span, SpanProcessor
from opentelemetry.sdk.util import BoundedList
from opentelemetry.trace import Link, Status

from . import _trace
from ._redaction import MARKER, Redactor

logger = logging.getLogger("agenttrace")

# Attributes we wrote already redacted (and that are large): scanning them again is wasted work.
OWN_ATTRIBUTES = frozenset(
    {
        _trace.ATTR_EVENT,
        _trace.ATTR_EVENTS,
        _trace.ATTR_RUN,
        _trace.ATTR_STEP_INPUT,
        _trace.ATTR_STEP_RESULT,
    }
)
URL_ATTRIBUTES = frozenset(
    {"url.full", "http.url", "url.original", "http.target", "url.query", "url.path"}
)
SCRUBBED_ATTRIBUTE = "agenttrace.scrubbed"  # which attributes of this span were scrubbed


class ScrubbingSpanProcessor(SpanProcessor):
    """Hands every processor behind it the scrubbed span: one scrubbing, all exporters."""

    def __init__(self, redactor: Redactor, processors: Sequence[SpanProcessor]) -> None:
        self.redactor = redactor
        self.processors = tuple(processors)

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        for processor in self.processors:
            processor.on_start(span, parent_context)

    def on_end(self, span: ReadableSpan) -> None:
        scrubbed = scrub_span(span, self.redactor)
        for processor in self.processors:
            processor.on_end(scrubbed)

    def shutdown(self) -> None:
        for processor in self.processors:
            try:
                processor.shutdown()
            except Exception:
                logger.exception("agenttrace: error while shutting down %r", processor)

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return all([p.force_flush(timeout_millis) for p in self.processors])


def scrub_span(span: ReadableSpan, redactor: Redactor) -> ReadableSpan:
    """The span with secrets scrubbed from its name, attributes, events, links and status."""
    try:
        return _scrub(span, redactor)
    except Exception:
        # Never export what we failed to scrub: keep the span's shape, drop its strings.
        logger.exception(
            "agenttrace: could not scrub span %r; its attributes are dropped", span.name
        )
        return _rebuild(span, name=span.name, attributes=_blank(span.attributes or {}))


def _scrub(span: ReadableSpan, redactor: Redactor) -> ReadableSpan:
    attributes, scrubbed = scrub_attributes(span.attributes or {}, redactor)
    name = redactor.text(span.name)
    events = _events(span.events, redactor)
    links = _links(span.links, redactor)
    status = span.status
    if status.description:
        description = redactor.text(status.description)
        if description != status.description:
            status = Status(status.status_code, description)
    unchanged = attributes is None and events is None and links is None
    if unchanged and name == span.name and status is span.status:
        return span
    if scrubbed:
        attributes = dict(attributes if attributes is not None else span.attributes or {})
        attributes[SCRUBBED_ATTRIBUTE] = tuple(scrubbed)
    return _rebuild(
        span, name=name, attributes=attributes, events=events, links=links, status=status
    )


def scrub_attributes(
    attributes: Mapping[str, Any], redactor: Redactor
) -> tuple[dict[str, Any] | None, list[str]]:
    """(scrubbed copy or None when unchanged, names of the attributes that changed)."""
    out: dict[str, Any] | None = None
    changed: list[str] = []
    for key, value in attributes.items():
        if key in OWN_ATTRIBUTES:
            continue
        new = scrub_attribute(key, value, redactor)
        if new is not value and new != value:
            if out is None:
                out = dict(attributes)
            out[key] = new
            changed.append(key)
    return out, changed


def scrub_attribute(key: str, value: Any, redactor: Redactor) -> Any:
    if redactor.secret_attribute(key):
        return _blank_value(value)
    if isinstance(value, str):
        # Spans repeat the same few values (method, host, URL): remember the clean ones.
        clean = redactor.clean_attributes
        if (key, value) in clean:
            return value
        new = redactor.url(value) if key in URL_ATTRIBUTES else redactor.text(value)
        if new == value:
            if len(clean) > 10000:
                clean.clear()
            clean.add((key, value))
        return new
    if isinstance(value, (list, tuple)) and any(isinstance(v, str) for v in value):
        return tuple(redactor.text(v) if isinstance(v, str) else v for v in value)
    return value


def _blank_value(value: Any) -> Any:
    if isinstance(value, str):
        return MARKER if value and value != MARKER else value
    if isinstance(value, (list, tuple)):
        return tuple(MARKER if isinstance(v, str) else v for v in value)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return MARKER
    return value


def _blank(attributes: Mapping[str, Any]) -> dict[str, Any]:
    return {k: (v if k in OWN_ATTRIBUTES else _blank_value(v)) for k, v in attributes.items()}


def _events(events: Any, redactor: Redactor) -> list[Event] | None:
    out, changed = [], False
    for event in events:
        attributes, _ = scrub_attributes(event.attributes or {}, redactor)
        name = redactor.text(event.name)
        if attributes is None and name == event.name:
            out.append(event)
            continue
        changed = True
        out.append(
            Event(
                name,
                attributes if attributes is not None else event.attributes,
                event.timestamp,
                limit=None,
            )
        )
    return out if changed else None


def _links(links: Any, redactor: Redactor) -> list[Link] | None:
    out, changed = [], False
    for link in links:
        attributes, _ = scrub_attributes(link.attributes or {}, redactor)
        if attributes is None:
            out.append(link)
            continue
        changed = True
        out.append(Link(link.context, attributes))
    return out if changed else None


def _rebuild(
    span: ReadableSpan,
    *,
    name: str,
    attributes: Mapping[str, Any] | None = None,
    events: list[Event] | None = None,
    links: list[Link] | None = None,
    status: Status | None = None,
) -> ReadableSpan:
    bounded = BoundedAttributes(
        None, attributes if attributes is not None else (span.attributes or {}), immutable=True
    )
    bounded.dropped = span.dropped_attributes  # the exported counts must stay true
    return ReadableSpan(
        name=name,
        context=span.context,
        parent=span.parent,
        resource=span.resource,
        attributes=bounded,
        events=_bounded(events if events is not None else span.events, span.dropped_events),
        links=_bounded(links if links is not None else span.links, span.dropped_links),
        kind=span.kind,
        status=status if status is not None else span.status,
        start_time=span.start_time,
        end_time=span.end_time,
        instrumentation_scope=span.instrumentation_scope,
    )


def _bounded(items: Any, dropped: int) -> BoundedList:
    bounded = BoundedList.from_seq(None, items)
    bounded.dropped = dropped
    return bounded
