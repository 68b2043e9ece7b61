"""Case 4 (streaming): time to first chunk of an OpenAI SSE stream, one variant.

Params: variant (none|vcrpy|agenttrace), base_url (examples/llm_server.py started with a chunk
delay), streams (timed streams), workdir.

The server sends the first chunk at once and the next ones ``chunk_delay`` apart, so a recorder
that buffers the stream (vcrpy) delays the first chunk by the whole stream's duration.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

from clients import SETUPS
from harness import emit, params

MESSAGES = [{"role": "user", "content": "Say hello to the benchmark"}]


def one_stream(client: Any, i: int) -> tuple[float, float, int]:
    """(ms to the first chunk, ms to the last, chunks) for one streamed completion."""
    begin = time.perf_counter()
    first = None
    chunks = 0
    stream = client.chat.completions.create(
        model="local-model", messages=[*MESSAGES, {"role": "user", "content": f"#{i}"}], stream=True
    )
    for _ in stream:
        chunks += 1
        if first is None:
            first = time.perf_counter()
    end = time.perf_counter()
    assert first is not None, "the stream yielded no chunk"
    return (first - begin) * 1000, (end - begin) * 1000, chunks


def main() -> None:
    p = params()
    finish = SETUPS[p["variant"]]("openai", p["workdir"])
    import openai

    client = openai.OpenAI(base_url=p["base_url"] + "/v1", api_key="sk-bench", max_retries=0)
    # Connection, SDK lazies and recorders warm up on a stream that is not timed (the first
    # stream on a connection also waits out the server's delayed ACK, ~40 ms, whoever records).
    one_stream(client, -1)
    runs = [one_stream(client, i) for i in range(p["streams"])]
    seen = finish()
    emit(
        {
            "ttfc_ms": statistics.median(r[0] for r in runs),
            "total_ms": statistics.median(r[1] for r in runs),
            "chunks": runs[0][2],
            "made": p["streams"] + 1,
            "seen": seen,
        }
    )


if __name__ == "__main__":
    main()
