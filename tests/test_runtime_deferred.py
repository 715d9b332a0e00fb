"""edge.runtime.defer_unused_imports: a deferred module costs nothing until it is used, and
then behaves exactly as if it had been imported normally (run defers asyncio and
subprocess, which structlog and gpiozero import and the daemon never uses). Each case runs
in a fresh interpreter: the test process has imported everything already."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.support.site import REPO

PACKAGE = {
    "deferme/__init__.py": "LOADS = []\nLOADS.append('package')\nVALUE = 42\n",
    "deferme/sub.py": "from deferme import LOADS\nLOADS.append('sub')\nNAME = 'sub'\n",
    "user.py": "import deferme\n\ndef value():\n    return deferme.VALUE\n",
}


def run_child(tmp_path: Path, body: str) -> str:
    for name, text in PACKAGE.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text, encoding="utf-8")
    code = "import sys\nsys.path.insert(0, sys.argv[1])\n" + textwrap.dedent(body)
    proc = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_import_costs_nothing_until_first_use(tmp_path: Path) -> None:
    out = run_child(
        tmp_path,
        """
        from edge.runtime import defer_unused_imports, is_deferred
        defer_unused_imports(("deferme",))
        import deferme, user  # `import` finds the stand-in
        assert is_deferred(sys.modules["deferme"])
        assert user.value() == 42  # first use: imported for real, exactly once
        real = sys.modules["deferme"]
        assert not is_deferred(real) and real.LOADS == ["package"]
        assert deferme.VALUE == 42 and user.value() == 42  # old references still answer
        from deferme import VALUE
        import deferme.sub
        assert VALUE == 42 and real.sub.NAME == "sub" and real.LOADS == ["package", "sub"]
        print("ok")
        """,
    )
    assert out.strip() == "ok"


@pytest.mark.parametrize(
    "first_use",
    ["import deferme.sub", "from deferme import VALUE", "from deferme.sub import NAME"],
)
def test_submodules_and_from_imports_load_it_once(tmp_path: Path, first_use: str) -> None:
    out = run_child(
        tmp_path,
        f"""
        from edge.runtime import defer_unused_imports, is_deferred
        defer_unused_imports(("deferme",))
        {first_use}
        real = sys.modules["deferme"]
        assert not is_deferred(real) and real.LOADS.count("package") == 1, real.LOADS
        print("ok")
        """,
    )
    assert out.strip() == "ok"


def test_structlog_keeps_asyncio_deferred_and_still_reaches_it(tmp_path: Path) -> None:
    """What run does: asyncio stays unloaded through structlog's import and logging; a
    lookup through structlog's own reference still gets the real module."""
    out = run_child(
        tmp_path,
        """
        from edge.runtime import defer_unused_imports, is_deferred
        defer_unused_imports()
        import structlog, structlog.stdlib
        structlog.get_logger("t").info("hello")
        assert is_deferred(sys.modules["asyncio"]) and is_deferred(sys.modules["subprocess"])
        assert callable(structlog.stdlib.asyncio.get_running_loop)
        import asyncio
        assert not is_deferred(sys.modules["asyncio"])
        assert asyncio.run(asyncio.sleep(0, result=7)) == 7
        print("ok")
        """,
    )
    assert out.strip().endswith("ok")


def test_a_module_already_imported_stays(tmp_path: Path) -> None:
    out = run_child(
        tmp_path,
        """
        import deferme
        from edge.runtime import defer_unused_imports, is_deferred
        defer_unused_imports(("deferme",))
        assert sys.modules["deferme"] is deferme and not is_deferred(deferme)
        print("ok")
        """,
    )
    assert out.strip() == "ok"
