"""OTLP/HTTP trace payloads (protobuf or JSON, optionally gzip) to neutral span records."""

from __future__ import annotations

import base64
import binascii
import json
import re
import zlib
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


def decompress(body: bytes, encoding: str | None, limit: int) -> bytes:
    """Undo Content-Encoding, refusing to inflate past ``limit`` bytes (gzip bombs)."""
    coding = (encoding or "identity").strip().lower()
    if coding in ("", "identity"):
        return body
    if coding == "gzip":
        wbits = 16 + zlib.MAX_WBITS
    elif coding == "deflate":
        wbits = zlib.MAX_WBITS
    else:
        raise PayloadError(
            415, f"unsupported Content-Encoding {coding!r}; send gzip or no encoding"
        )
    out = bytearray()
    data = body
    try:
        # A gzip stream may hold several members; each gets its own decompressor.
        while data:
            inflater = zlib.decompressobj(wbits)
            out += inflater.decompress(data, limit + 1 - len(out))
            if len(out) > limit:
                raise PayloadError(413, f"payload inflates beyond the {limit}-byte limit")
            if not inflater.eof:
                if inflater.unconsumed_tail:
                    raise PayloadError(413, f"payload inflates beyond the {limit}-byte limit")
                raise PayloadError(400, f"{coding} body is truncated")
            data = inflater.unused_data
    except zlib.error as exc:
        raise PayloadError(400, f"body is not valid {coding}: {exc}") from None
    return bytes(out)


def decode(body: bytes, media: str) -> Batch:
    """Parse an ExportTraceServiceRequest (already decompressed) into span records."""
    request = ExportTraceServiceRequest()
    if media == JSON:
        _parse_json(body, request)
    else:
        try:
            request.ParseFromString(body)
        except (DecodeError, RuntimeError, ValueError) as exc:
            raise PayloadError(
                400, f"body is not an OTLP ExportTraceServiceRequest protobuf: {exc}"
            ) from None
    return _to_batch(request)


def encode_response(batch: Batch, media: str) -> bytes:
    response = ExportTraceServiceResponse()
    if batch.rejected:
        response.partial_success.rejected_spans = batch.rejected
        response.partial_success.error_message = batch.reason
    if media == JSON:
        return json_format.MessageToJson(response, indent=None).encode()
    return response.SerializeToString()


def _parse_json(body: bytes, request: ExportTraceServiceRequest) -> None:
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PayloadError(400, f"body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise PayloadError(400, f"OTLP/JSON body must be an object, got {type(data).__name__}")
    _hex_ids_to_base64(data)
    try:
        # Unknown fields are ignored, as the OTLP spec asks of receivers.
        json_format.ParseDict(data, request, ignore_unknown_fields=True)
    except (json_format.ParseError, ValueError, TypeError) as exc:
        raise PayloadError(
            400, f"body is not an OTLP/JSON ExportTraceServiceRequest: {exc}"
        ) from None


def _hex_ids_to_base64(node: Any) -> None:
    # OTLP/JSON writes IDs as hex while protobuf's JSON mapping expects base64 for bytes.
    if isinstance(node, dict):
        for key, value in node.items():
            if key in _ID_KEYS and isinstance(value, str):
                if _HEX_ID.match(value):
                    node[key] = base64.b64encode(bytes.fromhex(value)).decode()
            else:
                _hex_ids_to_base64(value)
    elif isinstance(node, list):
        for item in node:
            _hex_ids_to_base64(item)


def _to_batch(request: ExportTraceServiceRequest) -> Batch:
    batch = Batch()
    for resource_spans in request.resource_spans:
        service = None
        for kv in resource_spans.resource.attributes:
            if kv.key == "service.name":
                service = _value(kv.value)
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                if len(span.trace_id) != 16 or len(span.span_id) != 8 or not any(span.trace_id):
                    batch.rejected += 1
                    batch.reason = "spans need a 16-byte trace_id and an 8-byte span_id"
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
    return getattr(value, which)


def is_hex_trace_id(text: str) -> bool:
    """A trace id as the API spells it: 32 hex digits."""
    if len(text) != 32:
        return False
    try:
        return any(binascii.unhexlify(text))
    except (binascii.Error, ValueError):
        return False
