"""Case 1 (record overhead per call) and case 6 (peak RSS of a recorded run): one variant.

Params: variant (none|otel|vcrpy|agenttrace), client (requests|httpx), url, warmup, calls,
batches, workdir.
"""

from __future__ import annotations

from clients import SETUPS, http_poster
from harness import emit, params, peak_rss_mb, per_call_us


def main() -> None:
    p = params()
    finish = SETUPS[p["variant"]](p["client"], p["workdir"])
    post = http_poster(p["client"], p["url"])
    warmup, calls = p["warmup"], p["calls"]
    for i in range(warmup):
        post(i)
    timed = per_call_us(post, range(warmup, warmup + calls), p["batches"])
    seen = finish()  # recorders write their trace/cassette here: not per-call cost
    emit(
        {
            "per_call_us": timed,
            "peak_rss_mb": peak_rss_mb(),
            "made": warmup + calls,
            "seen": seen,
        }
    )


if __name__ == "__main__":
    main()
