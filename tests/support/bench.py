"""Running a benchmark as its smoke tests do: ``python -m bench.X ... --json PATH`` in a
child process, which must succeed and write JSON without NaN or Infinity."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent.parent


def _no_nan(constant: str) -> Any:
    raise ValueError(f"not JSON: {constant}")


def run_bench(
    module: str, out: Path, args: list[str], timeout: float
) -> tuple[str, dict[str, Any]]:
    """Run ``module`` with ``args`` and ``--json out``; return its stdout and its JSON."""
    proc = subprocess.run(
        [sys.executable, "-m", module, *args, "--json", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    return proc.stdout, json.loads(out.read_text(encoding="utf-8"), parse_constant=_no_nan)
