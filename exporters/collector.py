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
from collections.abc import Iterator

from opentelemetry.sdk.environment_variables import (
    OTEL_EXPORTER_OTLP_ENDPOINT,
    OTEL_EXPORTER_OTLP_PROTOCOL,
    OTEL_EXPORTER_OTLP_TRACES_ENDPOINT,
    OTEL_EXPORTER_OTLP_TRACES_PROTOCOL,
)
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter

logger = logging.getLogger("agenttrace")

DEFAULT_PROTOCOL = "http/protobuf"

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
    # Behind the session's scrubbing processor, like every exporter: a collector we do not
    # control never sees a span before it is scrubbed.
    return BatchSpanProcessor(exporter)


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
        if exporter is not None:
            yield exporter


def _is_otlp(exporter: object) -> bool:
    cls = type(exporter)
    return (
        cls.__module__.startswith("opentelemetry.exporter.otlp") and "SpanExporter" in cls.__name__
    )
