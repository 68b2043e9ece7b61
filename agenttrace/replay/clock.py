"""The replayed wall clock: it starts at the recorded start time (monotonic clocks stay live)."""

from __future__ import annotations

import time_machine

from .._patches import Patches


def start_clock(started_at: float, patches: Patches) -> None:
    travel = time_machine.travel(started_at, tick=True)
    travel.start()
    patches.on_undo(travel.stop)
