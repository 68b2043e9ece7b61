"""The run-journal micro-benchmark (``bench_journal.run()``) in a worker.

Params: none. Prints µs per event, by case.
"""

from __future__ import annotations

import bench_journal
from harness import emit


def main() -> None:
    emit({str(name): us for name, us in bench_journal.run().items()})


if __name__ == "__main__":
    main()
