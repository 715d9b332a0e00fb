"""A stand-in benchmark for tests of ``python -m bench`` (tests/test_bench_table.py): takes
``[--quick] --json PATH``, prints its own table, writes JSON with a ``headline`` at once."""

from __future__ import annotations

import json
import sys
from pathlib import Path

HEADLINE = [
    {
        "name": "fake latency p99",
        "value": 1.25,
        "unit": "ms",
        "baseline_name": "bare paho p99",
        "baseline": 0.25,
        "target": "<= bare p99 + 2 ms",
        "pass": True,
    },
    {
        "name": "fake throughput",
        "value": 12345.6,
        "unit": "ev/s",
        "baseline_name": None,
        "baseline": None,
        "target": None,
        "pass": None,
    },
]


def main(argv: list[str]) -> int:
    out = Path(argv[argv.index("--json") + 1])
    quick = "--quick" in argv
    print("fake benchmark's own table")
    results = {"meta": {"quick": quick}, "figure": 1, "headline": HEADLINE}
    out.write_text(json.dumps(results), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
