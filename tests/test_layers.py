"""The house's import rules (docs/architecture.md, "Who may import whom"), read from the
source with ast: a module importing across a wall fails here, naming file and line."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

# The composition roots: `run` builds the real hardware, `sim` the simulator, `safe-outputs`
# drives the real outputs and Modbus relays off without a site (nothing else in edge/ may
# name a concrete driver or the simulator).
COMPOSITION_ROOTS = ("edge.cli", "edge.safe_outputs")

# The driver modules edge/ may import: the interfaces (protocols, settings) and the errors.
DRIVER_INTERFACES = ("drivers.base", "drivers.settings", "drivers.errors")

# Concrete driver modules edge/ still imports, with the reason; the list may only shrink.
DRIVER_EXCEPTIONS: set[tuple[str, str]] = set()


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, top_level: bool = False) -> list[tuple[int, str]]:
    """Every import in the file (``top_level``: only those run when it is imported)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    out: list[tuple[int, str]] = []
    for node in tree.body if top_level else ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.lineno, node.module))
            out += [(node.lineno, f"{node.module}.{a.name}") for a in node.names]
    return out


def modules(package: str) -> list[Path]:
    return sorted((REPO / package.replace(".", "/")).rglob("*.py"))


def under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


# A device kind's models (its config, events and command args) are data, not devices: the
# machines that decide on them may import them.
KIND_MODELS = re.compile(r"^edge\.devices\.\w+\.(config|events|commands)(\.\w+)?$")


def violations(
    package: str, forbidden: tuple[str, ...], allowed: re.Pattern[str] | None = None
) -> list[str]:
    bad = []
    for path in modules(package):
        if module_name(path) in COMPOSITION_ROOTS:
            continue
        for line, name in imports(path):
            if allowed is not None and allowed.match(name):
                continue
            if any(under(name, f) for f in forbidden):
                bad.append(f"{path.relative_to(REPO)}:{line}: {name}")
    return sorted(set(bad))


@pytest.mark.parametrize(
    ("package", "forbidden", "allowed"),
    [
        # The spine knows no device, no machine, no site.
        (
            "edge.core",
            ("edge.machines", "edge.devices", "edge.site", "edge.cli", "simulator"),
            None,
        ),
        # Machines are pure: no devices (but for their models), no drivers, no threads or I/O.
        (
            "edge.machines",
            (
                "edge.devices",
                "edge.site",
                "edge.cli",
                "drivers",
                "simulator",
                "threading",
                "socket",
                "sqlite3",
                "serial",
                "paho",
            ),
            KIND_MODELS,
        ),
        # The centre-side tools know the wire (core, config, models), not the site's insides.
        (
            "edge.tools",
            ("edge.devices", "edge.machines", "edge.site", "drivers", "simulator"),
            None,
        ),
        # Nothing in edge/ runs simulated hardware or test code.
        ("edge", ("simulator", "tests", "bench"), None),
        # The simulator never imports tests.
        ("simulator", ("tests", "bench"), None),
    ],
)
def test_no_import_crosses_a_wall(
    package: str, forbidden: tuple[str, ...], allowed: re.Pattern[str] | None
) -> None:
    assert violations(package, forbidden, allowed) == []


def test_a_kinds_models_never_import_its_controller() -> None:
    """edge.config and the schema tools read every kind's models: those modules (and the
    kind's package) must not load a controller when imported (a kind's factory imports it
    when a site is built), or the registry would import the site."""
    bad = []
    for path in modules("edge.devices"):
        mod = module_name(path)
        if not (KIND_MODELS.match(mod) or mod.count(".") == 2 or mod == "edge.devices.registry"):
            continue
        for line, name in imports(path, top_level=True):
            if name.endswith(".controller") or ".controller." in name or under(name, "edge.site"):
                bad.append(f"{path.relative_to(REPO)}:{line}: {name}")
    assert bad == []


def test_edge_sees_only_driver_interfaces() -> None:
    bad = []
    for path in modules("edge"):
        mod = module_name(path)
        if mod in COMPOSITION_ROOTS:
            continue
        for line, name in imports(path):
            if not under(name, "drivers") or name in ("drivers",):
                continue
            top = ".".join(name.split(".")[:2])
            if top in DRIVER_INTERFACES or (mod, top) in DRIVER_EXCEPTIONS:
                continue
            bad.append(f"{path.relative_to(REPO)}:{line}: {name}")
    assert sorted(set(bad)) == []


KIND_PACKAGE = re.compile(r"^edge\.devices\.(?P<kind>\w+)\.")


def test_device_kinds_do_not_import_each_others_controllers() -> None:
    """A kind talks to another through a port (``edge/devices/channels.py``), never through
    the other kind's controller module; its models (config, events, commands) are data."""
    kinds = {p.name for p in (REPO / "edge" / "devices").iterdir() if (p / "__init__.py").exists()}
    bad = []
    for path in modules("edge.devices"):
        own = KIND_PACKAGE.match(module_name(path) + ".")
        if own is None or own["kind"] not in kinds:
            continue
        for line, name in imports(path):
            other = KIND_PACKAGE.match(name + ".")
            if other is None or other["kind"] == own["kind"] or other["kind"] not in kinds:
                continue
            if not KIND_MODELS.match(name):
                bad.append(f"{path.relative_to(REPO)}:{line}: {name}")
    assert sorted(set(bad)) == []


def test_the_rule_checker_sees_a_crossing(tmp_path: Path) -> None:
    """The checker itself: a machine importing a driver is reported with its line."""
    src = tmp_path / "m.py"
    src.write_text("import json\nfrom drivers.base import Coil\n", encoding="utf-8")
    assert (2, "drivers.base") in imports(src)
