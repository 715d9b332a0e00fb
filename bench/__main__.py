"""Every benchmark in one run, every headline figure in one table.

    python -m bench [--quick] [--json PATH] [--only NAME ...] [--skip NAME ...]

Runs each benchmark of BENCHES (and ``bench.bench_fleet`` once that module exists) as a
child process with ``--json``, one after the other (never two at once: they would measure
each other), and reads the ``headline`` list of its JSON: per figure its value, the
baseline measured in the same run, the target and whether it was met. Prints one table
(progress on stderr; each benchmark's own table is kept in the JSON, ``output``) and, with
``--json``, writes the lot: ``meta`` (machine, versions, date), ``benches`` (per benchmark:
``ok``, ``wall_s``, ``error``, ``headline``, ``results``, ``output``) and ``headline`` (every
row, with its ``bench``). A benchmark that fails is a row saying so; the others still run.
Exit status: 0 when every benchmark ran (whether its targets passed or not), else 1.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent

# name -> module, in the order they run. bench_fleet is added when it exists.
BENCHES: dict[str, str] = {
    "spine": "bench.bench_spine",
    "flood": "bench.bench_flood",
    "replay": "bench.bench_replay",
    "brokers": "bench.bench_brokers",
    "escalation": "bench.bench_escalation",
    "lockers": "bench.bench_lockers",
}
OPTIONAL: dict[str, str] = {"fleet": "bench.bench_fleet"}

HEADLINE_KEYS = ("name", "value", "unit", "baseline_name", "baseline", "target", "pass")


def available() -> dict[str, str]:
    """BENCHES, plus the optional ones whose module exists."""
    out = dict(BENCHES)
    for name, module in OPTIONAL.items():
        if importlib.util.find_spec(module) is not None:
            out[name] = module
    return out


def machine() -> dict[str, Any]:
    """Where the run happened: cores, CPU model, Python, mosquitto, date, load."""
    from tests.support.mqtt import find_mosquitto

    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mosq = find_mosquitto()
    version = "not found"
    if mosq is not None:
        try:
            out = subprocess.run([mosq, "-h"], capture_output=True, text=True, timeout=5).stdout
            version = out.splitlines()[0].strip()
        except (OSError, subprocess.SubprocessError, IndexError):
            version = "unknown"
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpus": os.cpu_count(),
        "cpu_model": cpu,
        "machine": platform.machine(),
        "python": platform.python_version(),
        "mosquitto": version,
        "load_avg_1m_at_start": round(os.getloadavg()[0], 2),
    }


def check_headline(rows: Any) -> list[dict[str, Any]]:
    """The ``headline`` of a benchmark's JSON, checked: a list of objects with exactly the
    keys of HEADLINE_KEYS and a finite number as value. Raises ValueError otherwise."""
    if not isinstance(rows, list):
        raise ValueError(f"headline is not a list: {type(rows).__name__}")
    out = []
    for i, row in enumerate(rows):
        if not isinstance(row, dict) or set(row) != set(HEADLINE_KEYS):
            raise ValueError(f"headline[{i}]: want the keys {list(HEADLINE_KEYS)}, got {row!r}")
        value = row["value"]
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"headline[{i}] {row['name']!r}: value {value!r} is not a number")
        if row["pass"] not in (True, False, None):
            raise ValueError(f"headline[{i}] {row['name']!r}: pass {row['pass']!r}")
        out.append({k: row[k] for k in HEADLINE_KEYS})
    return out


def run_one(name: str, command: Sequence[str], timeout_s: float) -> dict[str, Any]:
    """Run one benchmark (``command`` gets ``--json PATH`` appended); its headline, its full
    results and its own table, or what went wrong."""
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix=f"ansim-bench-{name}-") as d:
        out = Path(d) / "results.json"
        entry: dict[str, Any] = {"ok": False, "error": None, "headline": [], "results": None}
        try:
            proc = subprocess.run(
                [*command, "--json", str(out)],
                cwd=REPO,
                stdout=subprocess.PIPE,
                stderr=None,  # the benchmark's progress goes straight to ours
                text=True,
                timeout=timeout_s,
            )
            entry["output"] = proc.stdout
            if proc.returncode != 0:
                raise RuntimeError(f"exit status {proc.returncode}")
            results = json.loads(out.read_text(encoding="utf-8"))
            entry["headline"] = check_headline(results.get("headline"))
            entry["results"] = results
            entry["ok"] = True
        except subprocess.TimeoutExpired:
            entry["error"] = f"timed out after {timeout_s:g} s"
        except (OSError, ValueError, RuntimeError) as exc:
            entry["error"] = str(exc)
    entry["wall_s"] = round(time.monotonic() - t0, 1)
    return entry


def fmt(value: float | None, unit: str = "") -> str:
    if value is None:
        return ""
    if abs(value) >= 1000:
        text = f"{value:,.0f}"
    elif abs(value) >= 10:
        text = f"{value:.1f}"
    else:
        text = f"{value:.2f}"
    return f"{text} {unit}".rstrip()


def rows_of(benches: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Every headline row, with its benchmark's name; a failed benchmark is one row."""
    out: list[dict[str, Any]] = []
    for name, entry in benches.items():
        if not entry["ok"]:
            out.append(
                {
                    "bench": name,
                    "name": f"{name}: did not run to the end ({entry['error']})",
                    "value": None,
                    "unit": "",
                    "baseline_name": None,
                    "baseline": None,
                    "target": None,
                    "pass": False,
                }
            )
            continue
        out += [{"bench": name, **row} for row in entry["headline"]]
    return out


def render(combined: dict[str, Any]) -> str:
    """The one table: figure, value, baseline (same run), target, result."""
    m = combined["meta"]
    head = (
        f"ansim-edge benchmarks — {m['date']}; {m['cpus']} CPUs ({m['cpu_model']}); "
        f"Python {m['python']}; {m['mosquitto']}; load avg {m['load_avg_1m_at_start']} at start"
        f"{'; QUICK (tiny N: not figures to quote)' if m.get('quick') else ''}"
    )
    table: list[tuple[str, ...]] = [
        ("bench", "figure", "value", "baseline (same run)", "target", "")
    ]
    for r in combined["headline"]:
        base = ""
        if r["baseline"] is not None:
            base = f"{r['baseline_name']}: {fmt(r['baseline'], r['unit'])}"
        result = {True: "PASS", False: "FAIL", None: ""}[r["pass"]]
        table.append(
            (
                r["bench"],
                r["name"],
                fmt(r["value"], r["unit"]),
                base,
                r["target"] or "",
                result,
            )
        )
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    lines = [head]
    for k, row in enumerate(table):
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
        if k == 0:
            lines.append("  ".join("-" * w for w in widths))
    failed = [n for n, e in combined["benches"].items() if not e["ok"]]
    walls = ", ".join(f"{n} {e['wall_s']:g} s" for n, e in combined["benches"].items())
    tail = f"; FAILED to run: {', '.join(failed)}" if failed else ""
    lines.append(f"wall time: {walls}{tail}")
    return "\n".join(lines)


def combine(meta: dict[str, Any], benches: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return {"meta": meta, "benches": benches, "headline": rows_of(benches)}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    names = list(available())
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__.split("\n")[0],
        epilog=f"benchmarks: {', '.join(names)}",
    )
    p.add_argument("--quick", action="store_true", help="each benchmark in its quick mode")
    p.add_argument("--json", type=Path, help="also write everything as JSON here")
    p.add_argument("--only", nargs="+", choices=names, metavar="NAME", help="run only these")
    p.add_argument("--skip", nargs="+", choices=names, metavar="NAME", default=[])
    p.add_argument("--timeout-s", type=float, default=1800, help="per benchmark (default 1800)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    todo = {
        n: m
        for n, m in available().items()
        if (not args.only or n in args.only) and n not in args.skip
    }
    meta = {**machine(), "quick": bool(args.quick), "benches": list(todo)}
    benches: dict[str, dict[str, Any]] = {}
    for name, module in todo.items():
        print(f"=== {name} ({module})", file=sys.stderr, flush=True)
        command = [sys.executable, "-m", module, *(["--quick"] if args.quick else [])]
        benches[name] = run_one(name, command, args.timeout_s)
    combined = combine(meta, benches)
    print(render(combined))
    if args.json is not None:
        text = json.dumps(combined, indent=2, ensure_ascii=False, allow_nan=False)
        args.json.write_text(text + "\n", encoding="utf-8")
    return 0 if all(e["ok"] for e in benches.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
