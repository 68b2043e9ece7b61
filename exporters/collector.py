"""Export to the user's own OpenTelemetry Collector, beside the AgentTrace backend / local store.

Active when ``OTEL_EXPORTER_OTLP_ENDPOINT`` or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` is set.
The exporter is the standard OTLP one, constructed with no arguments so that it reads every
other ``OTEL_EXPORTER_OTLP_*`` variable (headers, compression, timeout, certificates) exactly as
in the user's other services; ``OTEL_BSP_*`` tune its ``BatchSpanProcessor`` the same way.
"""

from __future__ import annotations

import logging
import os
import random
import sys
from collections.abc import Callable, Iterator, Sequence

from opentelemetry.sdk.environment_variables import (
    OTEL_EXPORTER_OTLP_ENDPOINT,
    OTEL_EXPORTER_OTLP_PROTOCOL,
    OTEL_EXPORTER_OTLP_TRACES_ENDPOINT,
    OTEL_EXPORTER_OTLP_TRACES_PROTOCOL,
)
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

logger = logging.getLogger("agenttrace")

DEFAULT_PROTOCOL = "http/protobuf"

SpanScrubber = Callable[[ReadableSpan], ReadableSpan]

# The OTLP exporters draw their retry jitter from the global ``random`` module, which AgentTrace
# seeds for the agent: a retry while recording would shift the agent's random stream and make the
# recording unreplayable. A fixed seed draws no entropy; jitter needs no unpredictability.
_JITTER = random.Random(0x4A17)
_JITTER_MODULES = (
    "opentelemetry.exporter.otlp.common.http",
    "opentelemetry.exporter.otlp.proto.grpc.exporter",
)


def collector_processor(provider: TracerProvider | None = None) -> SpanProcessor | None:
    """A batch processor exporting to the collector the OTLP variables name, or None.

    ``provider`` is the TracerProvider the spans come from: if it already exports OTLP (the app,
    or the OpenTelemetry SDK configurator, set one up from the same variables), our spans reach
    the collector through it, and a second exporter would send every span twice.
    """
    if not (
        os.environ.get(OTEL_EXPORTER_OTLP_TRACES_ENDPOINT)
        or os.environ.get(OTEL_EXPORTER_OTLP_ENDPOINT)
    ):
        return None
    if provider is not None and any(_is_otlp(e) for e in _exporters(provider)):
        logger.info(
            "agenttrace: the TracerProvider already exports OTLP; our spans go to the collector "
            "through it (no second exporter)"
        )
        return None
    try:
        exporter = _exporter(_protocol())
    except Exception:  # a bad variable must not stop the agent, only this export
        logger.exception("agenttrace: could not set up the OTLP exporter to your collector")
        return None
    if exporter is None:
        return None
    scrub = span_scrubber()
    if scrub is not None:
        exporter = ScrubbingExporter(exporter, scrub)
    return BatchSpanProcessor(exporter)


def span_scrubber() -> SpanScrubber | None:
    """What scrubs spans before they leave for a collector we do not control: the same scrubber
    as the local store and the backend. Event payloads inside our spans are already redacted at
    record time; this is for everything else (the app's own spans, stock instrumentors' raw
    URLs and headers)."""
    from agenttrace._redaction import scrub_span

    return scrub_span


class ScrubbingExporter(SpanExporter):
    """Hands the inner exporter scrubbed copies: ``on_end`` spans are immutable, so redaction
    after the span ended means rebuilding it."""

    def __init__(self, inner: SpanExporter, scrub: SpanScrubber) -> None:
        self.inner = inner
        self._scrub = scrub

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        try:
            cleaned = [self._scrub(span) for span in spans]
        except Exception:
            # Sending unscrubbed spans would leak what the scrubber exists to remove.
            logger.exception("agenttrace: span scrubbing failed; batch not sent to the collector")
            return SpanExportResult.FAILURE
        return self.inner.export(cleaned)

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.inner.force_flush(timeout_millis)


def _protocol() -> str:
    value = (
        os.environ.get(OTEL_EXPORTER_OTLP_TRACES_PROTOCOL)
        or os.environ.get(OTEL_EXPORTER_OTLP_PROTOCOL)
        or DEFAULT_PROTOCOL
    )
    return value.strip().lower()


def _exporter(protocol: str) -> SpanExporter | None:
    if protocol == "grpc":
        try:
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        except ImportError:
            logger.error(
                "agenttrace: OTEL_EXPORTER_OTLP_PROTOCOL=grpc but the gRPC exporter is not "
                "installed (pip install opentelemetry-exporter-otlp-proto-grpc); spans are not "
                "sent to your collector"
            )
            return None
    elif protocol in ("http/protobuf", "http/json"):
        if protocol == "http/json":
            # The Python SDK has no OTLP/JSON exporter; collectors take protobuf on the same URL.
            logger.warning(
                "agenttrace: OTLP protocol http/json is not supported by the Python SDK; "
                "sending http/protobuf to the same endpoint"
            )
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    else:
        logger.error(
            "agenttrace: unknown OTLP protocol %r (use http/protobuf or grpc); spans are not sent "
            "to your collector",
            protocol,
        )
        return None
    _isolate_retry_jitter()
    return OTLPSpanExporter()


def _isolate_retry_jitter() -> None:
    for name in _JITTER_MODULES:
        module = sys.modules.get(name)
        if module is not None and getattr(module, "random", None) is random:
            module.random = _JITTER  # type: ignore[attr-defined]


def _exporters(provider: TracerProvider) -> Iterator[object]:
    # The SDK has no public way to list a provider's processors; read defensively.
    multi = getattr(provider, "_active_span_processor", None)
    for processor in getattr(multi, "_span_processors", ()):
        exporter = getattr(processor, "span_exporter", None)
        while isinstance(exporter, ScrubbingExporter):
            exporter = exporter.inner
        if exporter is not None:
            yield exporter


def _is_otlp(exporter: object) -> bool:
    cls = type(exporter)
    return (
        cls.__module__.startswith("opentelemetry.exporter.otlp") and "SpanExporter" in cls.__name__
    )
