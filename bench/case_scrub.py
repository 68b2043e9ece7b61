"""The scrubbing micro-benchmark (``bench_scrub.run()``, owned by the redaction work) in a worker.

Params: none. Prints ``{"skipped": ...}`` when ``bench/bench_scrub.py`` does not exist yet.
"""

from __future__ import annotations

import importlib.util

from harness import emit


def main() -> None:
    if importlib.util.find_spec("bench_scrub") is None:
        emit({"skipped": "bench/bench_scrub.py is not there yet"})
        return
    import bench_scrub

    emit({str(name): us for name, us in bench_scrub.run().items()})  # µs per event, by case


if __name__ == "__main__":
    main()
