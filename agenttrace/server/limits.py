"""Every bound the backend puts on a client, declared once with its default and its reason.

Fields with a ``flag`` are ``agenttrace serve`` options (the CLI builds them from this table);
the others are fixed: no real OTLP exporter comes near them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

MIB = 1024 * 1024
LARGE_INGEST_BYTES = 4 * MIB


def _knob(default: Any, help: str, flag: str | None = None, unit: str = "", zero: str = "") -> Any:
    # zero: what 0 means, for a limit that may be switched off
    return field(default=default, metadata={"help": help, "flag": flag, "unit": unit, "zero": zero})


@dataclass(frozen=True)
class Limits:
    max_request_bytes: int = _knob(
        32 * MIB,
        "largest accepted request body, after decompression",
        flag="--max-request-mb",
        unit="MiB",
    )
    header_timeout: float = _knob(
        10.0,
        "seconds a connection may take to send a request's headers (from connecting, or from "
        "the previous response); then it is closed",
        flag="--header-timeout",
        unit="s",
    )
    body_timeout: float = _knob(
        30.0,
        "seconds a request body may take to arrive in full (time spent waiting for a large-"
        "ingest slot not counted); then 408",
        flag="--body-timeout",
        unit="s",
    )
    idle_timeout: float = _knob(
        5.0,
        "seconds a keep-alive connection may sit idle between requests",
        flag="--idle-timeout",
        unit="s",
    )
    max_connections: int = _knob(
        1000,
        "open connections for the whole server; past it new requests get 503",
        flag="--max-connections",
    )
    max_connections_per_client: int = _knob(
        64,
        "open connections from one client address (raise it when a proxy or load balancer "
        "connects on everyone's behalf); past it a new connection gets 503 and is closed",
        flag="--max-connections-per-client",
        zero="no cap",
    )
    max_large_ingests: int = _knob(
        1,
        f"ingests of more than {LARGE_INGEST_BYTES // MIB} MiB decoded at the same time; the "
        "others wait their turn (bounds the server's memory)",
        flag="--max-large-ingests",
    )
    large_ingest_bytes: int = _knob(
        LARGE_INGEST_BYTES, "from this size (body read plus decoded) an ingest needs a slot"
    )
    max_compressed_members: int = _knob(
        64, "gzip members (or concatenated deflate streams) in one body; past it 400"
    )
    max_json_depth: int = _knob(
        160,
        "nesting of an OTLP/JSON body, checked before protobuf's own limit of 100 nested "
        "messages (binary and JSON: attribute values about 31 levels deep); past either 400",
    )
    max_header_bytes: int = _knob(
        16 * 1024, "request line and headers of one request; past it the connection gets 400"
    )


def knobs() -> list[dataclasses.Field[Any]]:
    """The limits with a command-line flag, in declaration order."""
    return [f for f in dataclasses.fields(Limits) if f.metadata["flag"]]


def flag_default(knob: dataclasses.Field[Any]) -> Any:
    """A knob's default in the unit its flag takes."""
    return knob.default / MIB if knob.metadata["unit"] == "MiB" else knob.default


def from_flag(knob: dataclasses.Field[Any], value: Any) -> Any:
    """A flag's value in the unit ``Limits`` keeps."""
    return int(value * MIB) if knob.metadata["unit"] == "MiB" else value
