"""Case 2 (replay cost per call) and case 3 (scaling with the recording's size): one variant.

Params: variant (live|floor|vcrpy|agenttrace|prepare-agenttrace|prepare-vcrpy), client, url, workdir,
recorded (calls in the recording), sample (calls made, spread evenly over the recording),
warmup (the first calls of the sample, untimed), batches, events (AgentTrace trace file),
cassette (vcrpy cassette).

The calls are ``payload(i)`` for the sampled i, so a recording of ``range(recorded)`` answers
every one of them. A sample smaller than the recording leaves recorded calls unplayed: under
governance that fails the process at exit, after the result is printed (expected here).
"""

from __future__ import annotations

import os
import time
from typing import Any

from clients import SETUPS, VCR_MATCH_ON, http_poster
from harness import emit, params, per_call_us


def sampled(recorded: int, sample: int) -> list[int]:
    """``sample`` call indices spread evenly over a recording of ``recorded`` calls."""
    sample = min(sample, recorded)
    return [i * recorded // sample for i in range(sample)]


def prepare(p: dict[str, Any], recorder: str) -> dict[str, Any]:
    """Record the reference run once (not timed): the thing every replay variant replays."""
    finish = SETUPS[recorder](p["client"], p["workdir"])
    post = http_poster(p["client"], p["url"])
    for i in range(p["recorded"]):
        post(i)
    seen = finish()
    if recorder == "vcrpy":
        seen["trace"] = os.path.join(p["workdir"], "cassette.yaml")
    return seen


def live(p: dict[str, Any]) -> dict[str, Any]:
    return {}


def agenttrace_replay(p: dict[str, Any]) -> dict[str, Any]:
    import agenttrace

    begin = time.perf_counter()
    agenttrace.init(
        mode="replay",
        governance_level="governance",
        replay_events=p["events"],
        local_dir=os.path.join(p["workdir"], ".agenttrace"),
    )
    return {"load_s": time.perf_counter() - begin}


def vcrpy_replay(p: dict[str, Any]) -> dict[str, Any]:
    import vcr

    begin = time.perf_counter()
    cassette = vcr.VCR(record_mode="none", match_on=VCR_MATCH_ON).use_cassette(p["cassette"])
    cassette.__enter__()
    return {"load_s": time.perf_counter() - begin}


REPLAYS = {"live": live, "floor": live, "agenttrace": agenttrace_replay, "vcrpy": vcrpy_replay}


def main() -> None:
    p = params()
    variant = p["variant"]
    if variant.startswith("prepare-"):
        emit(prepare(p, variant.removeprefix("prepare-")))
        return
    facts = REPLAYS[variant](p)
    post = http_poster(p["client"], p["url"], floor=variant == "floor")
    indices = sampled(p["recorded"], p["sample"])
    warmup = p["warmup"]
    for i in indices[:warmup]:
        post(i)
    facts["per_call_us"] = per_call_us(post, indices[warmup:], p["batches"])
    facts["made"] = len(indices)
    emit(facts)


if __name__ == "__main__":
    main()
