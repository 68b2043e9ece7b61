"""Span and trace IDs that never draw from the agent's entropy.

The SDK's default generator uses the global ``random`` module, so creating a span would shift
the agent's random stream between record and replay. This generator owns its ``Random``,
seeded once from the OS at import (before any replay patching is installed).
"""

from __future__ import annotations

import random

from opentelemetry.sdk.trace.id_generator import IdGenerator


class PrivateIdGenerator(IdGenerator):
    def __init__(self) -> None:
        self._random = random.Random()

    def generate_span_id(self) -> int:
        while True:
            value = self._random.getrandbits(64)
            if value:
                return value

    def generate_trace_id(self) -> int:
        while True:
            value = self._random.getrandbits(128)
            if value:
                return value

    def is_trace_id_random(self) -> bool:
        return True


ID_GENERATOR = PrivateIdGenerator()
