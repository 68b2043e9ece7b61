"""The replayed wall clock: each flow reads back, in order, what it read when recording.

A read beyond the recording (the replayed code reads the clock more often, or in a flow the
recording does not know) continues from the last value served — in that flow, else in any flow,
else the recorded start of the run — plus the real time elapsed since: the clock never runs
backwards and is not a violation. Recordings made before clock reads were recorded have none: the
clock then starts at the recorded start time and ticks in real time.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable, Mapping


class ReplayClock:
    def __init__(self, flows: Mapping[str, Iterable[int]], started_ns: int, real_now_ns: int):
        self._reads = {flow: deque(values) for flow, values in flows.items()}
        self._lock = threading.Lock()
        # (value served, real time it was served at): where a read beyond the recording goes on
        self._last: dict[str, tuple[int, int]] = {}
        self._latest = (started_ns, real_now_ns)

    def read(self, flow: str, real_ns: int) -> int:
        with self._lock:
            queue = self._reads.get(flow)
            if queue:
                value = queue.popleft()
            else:
                served, at = self._last.get(flow, self._latest)
                value = served + max(0, real_ns - at)
            self._last[flow] = (value, real_ns)
            if value >= self._latest[0]:
                self._latest = (value, real_ns)
            return value
