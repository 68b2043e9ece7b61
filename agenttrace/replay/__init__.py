"""Replay mode: serve a recorded run again, with no real I/O.

- ``processor``: :class:`ReplaySpanProcessor`, the Player (serving, bookkeeping, the replayed
  run's spans);
- ``engine``: :class:`ReplayEngine`, the cassette of recorded answers (O(1) lookups);
- ``matching``: canonical request keys;
- ``divergence``: what a divergence message says;
- ``span``: :class:`ReplaySpan`, a served call's span outside the SDK;
- ``clock``: the replayed wall clock.
"""

from .engine import ReplayEngine
from .processor import ReplaySpanProcessor

Player = ReplaySpanProcessor  # the name the architecture notes use

__all__ = ["Player", "ReplayEngine", "ReplaySpanProcessor"]
