"""OTLP/HTTP trace payloads (protobuf or JSON, optionally gzip) to neutral span records."""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from .._trace import span_record

PROTOBUF = "application/x-protobuf"
JSON = "application/json"

_KINDS = {0: "INTERNAL", 1: "INTERNAL", 2: "SERVER", 3: "CLIENT", 4: "PRODUCER", 5: "CONSUMER"}
_STATUSES = {0: "unset", 1: "ok", 2: "error"}
_HEX_ID = re.compile(r"^(?:[0-9a-fA-F]{16}|[0-9a-fA-F]{32})$")
_ID_KEYS = ("traceId", "spanId", "parentSpanId", "trace_id", "span_id", "parent_span_id")


class PayloadError(Exception):
    """The request cannot be ingested; ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.body_unread = False  # then the answer closes the connection


@dataclass
class Batch:
    """What one export request carried."""

    spans: list[dict[str, Any]] = field(default_factory=list)
    service_names: dict[str, str] = field(default_factory=dict)  # trace_id -> service.name
    rejected: int = 0
    reason: str = ""


def media_type(content_type: str | None) -> str:
    """The payload format named by a Content-Type header (protobuf when absent, as OTLP clients do)."""
    value = (content_type or PROTOBUF).split(";", 1)[0].strip().lower()
    if value in (PROTOBUF, "application/protobuf", "application/octet-stream"):
        return PROTOBUF
    if value == JSON:
        return JSON
    raise PayloadError(415, f"unsupported Content-Type {value!r}; send {PROTOBUF} or {JSON}")


def decode(body: bytearray, media: str, max_json_depth: int) -> Batch:
    """Parse a decompressed ExportTraceServiceRequest into span records.

    Empties ``body`` as soon as it is parsed, so a large request is not held twice. Protobuf
    refuses messages nested more than 100 deep (binary or JSON), which bounds attribute values
    (about 31 kvlist levels) and so the recursion below.
    """
    request = ExportTraceServiceRequest()
    if media == JSON:
        _parse_json(body, request, max_json_depth)
    else:
        try:
            request.ParseFromString(body)
        except (DecodeError, RuntimeError, ValueError) as exc:
            raise PayloadError(
                400, f"body is not an OTLP ExportTraceServiceRequest protobuf: {exc}"
            ) from None
        finally:
            body.clear()
    return _to_batch(request)


def encode_response(batch: Batch, media: str) -> bytes:
    response = ExportTraceServiceResponse()
    if batch.rejected:
        response.partial_success.rejected_spans = batch.rejected
        response.partial_success.error_message = batch.reason
    if media == JSON:
        return json_format.MessageToJson(response, indent=None).encode()
    return response.SerializeToString()


def _parse_json(body: bytearray, request: ExportTraceServiceRequest, max_depth: int) -> None:
    too_deep = f"OTLP/JSON body nests deeper than {max_depth} levels (the limit)"
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PayloadError(400, f"body is not valid JSON: {exc}") from None
    body.clear()
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PayloadError(400, f"body is not valid JSON: {exc}") from None
    except RecursionError:
        raise PayloadError(400, too_deep) from None
    del text
    if not isinstance(data, dict):
        raise PayloadError(400, f"OTLP/JSON body must be an object, got {type(data).__name__}")
    if not _hex_ids_to_base64(data, max_depth):
        raise PayloadError(400, too_deep)
    try:
        # Unknown fields are ignored, as the OTLP spec asks of receivers.
        json_format.ParseDict(data, request, ignore_unknown_fields=True)
    except (json_format.ParseError, ValueError, TypeError) as exc:
        raise PayloadError(
            400, f"body is not an OTLP/JSON ExportTraceServiceRequest: {exc}"
        ) from None
    except RecursionError:
        raise PayloadError(400, too_deep) from None


def _hex_ids_to_base64(root: dict[str, Any], max_depth: int) -> bool:
    """Rewrite IDs in place; False (and stop) when the document nests past ``max_depth``.

    OTLP/JSON writes IDs as hex while protobuf's JSON mapping expects base64 for bytes.
    A loop, not recursion: the depth is what is being checked.
    """
    stack: list[tuple[Any, int]] = [(root, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > max_depth:
            return False
        if isinstance(node, dict):
            for key, value in node.items():
                if key in _ID_KEYS and isinstance(value, str):
                    if _HEX_ID.match(value):
                        node[key] = base64.b64encode(bytes.fromhex(value)).decode()
                elif isinstance(value, (dict, list)):
                    stack.append((value, depth + 1))
        else:
            stack.extend((item, depth + 1) for item in node if isinstance(item, (dict, list)))
    return True


def _to_batch(request: ExportTraceServiceRequest) -> Batch:
    batch = Batch()
    for resource_spans in request.resource_spans:
        service = None
        for kv in resource_spans.resource.attributes:
            if kv.key == "service.name":
                service = _value(kv.value)
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                problem = _unstorable(span)
                if problem:
                    batch.rejected += 1
                    batch.reason = problem
                    continue
                trace_id = span.trace_id.hex()
                batch.spans.append(
                    span_record(
                        trace_id=trace_id,
                        span_id=span.span_id.hex(),
                        parent_id=span.parent_span_id.hex()
                        if len(span.parent_span_id) == 8
                        else None,
                        name=span.name,
                        kind=_KINDS.get(span.kind, "INTERNAL"),
                        start_ns=span.start_time_unix_nano,
                        end_ns=span.end_time_unix_nano or None,
                        status=_STATUSES.get(span.status.code, "unset"),
                        status_message=span.status.message or None,
                        attributes={kv.key: _value(kv.value) for kv in span.attributes},
                    )
                )
                if isinstance(service, str):
                    batch.service_names.setdefault(trace_id, service)
    return batch


# Stores keep times as signed 64-bit integers (nanoseconds: until the year 2262).
_MAX_NS = 2**63 - 1


def _unstorable(span: Any) -> str:
    if len(span.trace_id) != 16 or len(span.span_id) != 8 or not any(span.trace_id):
        return "spans need a 16-byte trace_id and an 8-byte span_id"
    if span.start_time_unix_nano > _MAX_NS or span.end_time_unix_nano > _MAX_NS:
        return f"span times must be at most {_MAX_NS} ns since the epoch"
    return ""


def _value(value: AnyValue) -> Any:
    which = value.WhichOneof("value")
    if which is None:
        return None
    if which == "array_value":
        return [_value(v) for v in value.array_value.values]
    if which == "kvlist_value":
        return {kv.key: _value(kv.value) for kv in value.kvlist_value.values}
    if which == "bytes_value":
        return base64.b64encode(value.bytes_value).decode()
    if which == "double_value" and not math.isfinite(value.double_value):
        # As protobuf's JSON mapping spells them: JSON itself has no NaN or Infinity.
        return json_format.MessageToDict(value)["doubleValue"]
    return getattr(value, which)


def is_hex_trace_id(text: str) -> bool:
    """A trace id as the API spells it: 32 hex digits."""
    if len(text) != 32:
        return False
    try:
        return any(binascii.unhexlify(text))
    except (binascii.Error, ValueError):
        return False
