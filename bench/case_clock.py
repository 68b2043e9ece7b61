"""Cost of one wall-clock read of the agent's: bare, recorded, and served in replay.

Params: ``{"variant": "none" | "record" | "replay", "reads": N, "workdir": DIR}``. The replay
variant first records the same N reads (untimed), then replays them: every timed read is served
from the recording. Result: ``{"time_time_us": ..., "datetime_now_us": ..., "reads": N}``.
"""

from __future__ import annotations

import datetime
import os
import time

from harness import emit, params, per_call_us


def _measure(reads: int) -> dict[str, float]:
    indices = range(reads)
    return {
        "time_time_us": per_call_us(lambda i: time.time(), indices, 20),
        "datetime_now_us": per_call_us(lambda i: datetime.datetime.now(), indices, 20),
    }


def main() -> None:
    p = params()
    variant, reads, workdir = p["variant"], int(p["reads"]), p["workdir"]
    if variant == "none":
        emit({**_measure(reads), "reads": reads})
        return
    from agenttrace import _config, _session

    store = os.path.join(workdir, variant)
    settings = {"local_dir": store}
    if variant == "replay":  # a recording of exactly the reads the timed loop makes
        recording = _session.Session(_config.resolve(settings), owns_exit=False).start()
        _measure(reads)
        recording.stop()
        settings.update(mode="replay", replay_events=os.path.join(store, "last.json"))
    session = _session.Session(_config.resolve(settings), owns_exit=False).start()
    result = _measure(reads)
    served = session.player.clock if session.player is not None else None
    session.stop()
    emit({**result, "reads": reads, "served": served is not None})


if __name__ == "__main__":
    main()
