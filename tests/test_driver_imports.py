"""Layering: drivers depend on nothing in edge/ (issue 8). The core may import drivers (their
interfaces); drivers must never import the core, not even for type checking, so a driver can
be used, tested and moved without the core. Shared errors live in drivers.errors."""

from __future__ import annotations

import ast
from pathlib import Path

DRIVERS = Path(__file__).resolve().parent.parent / "drivers"


def edge_imports(path: Path) -> list[str]:
    """Every import of ``edge`` (or ``edge.*``) in one file, as ``line: module``: plain and
    from-imports anywhere (module level, functions, TYPE_CHECKING blocks) and
    ``importlib.import_module("edge...")`` / ``__import__("edge...")`` with a literal name."""
    found: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        elif isinstance(node, ast.Call) and node.args:
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            first = node.args[0]
            if called in ("import_module", "__import__") and isinstance(first, ast.Constant):
                names = [str(first.value)]
        found += [
            f"{node.lineno}: {name}" for name in names if name == "edge" or name.startswith("edge.")
        ]
    return found


def test_drivers_import_nothing_from_edge() -> None:
    files = sorted(DRIVERS.rglob("*.py"))
    assert len(files) >= 5, f"no driver sources found under {DRIVERS}"
    offenders = {
        str(path.relative_to(DRIVERS.parent)): hits
        for path in files
        if (hits := edge_imports(path))
    }
    assert offenders == {}, f"drivers must not import edge (use drivers.errors): {offenders}"


def test_the_check_sees_every_form_of_import(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        "import edge\n"
        "import edge.core.errors as e\n"
        "from edge.core.errors import AnsimError\n"
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from edge.core.loop import CoreLoop\n"
        "def f():\n"
        "    import importlib\n"
        "    return importlib.import_module('edge.site')\n"
        "import edgeless\n"
        "from . import edge\n",
        encoding="utf-8",
    )
    assert edge_imports(sample) == [
        "1: edge",
        "2: edge.core.errors",
        "3: edge.core.errors",
        "6: edge.core.loop",
        "9: edge.site",
    ]


def test_edge_errors_re_exports_the_driver_errors() -> None:
    import drivers.errors
    import edge.core.errors

    for name in ("AnsimError", "HardwareError", "GpioUnavailableError", "InputFaultError"):
        assert getattr(edge.core.errors, name) is getattr(drivers.errors, name)
    assert edge.core.errors.CoilSafetyError is drivers.errors.CoilSafetyError
    assert issubclass(edge.core.errors.ConfigError, drivers.errors.AnsimError)
