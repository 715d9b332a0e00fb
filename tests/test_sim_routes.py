"""The simulator's control routes come from the device registry: ``simulator/routes/<kind>.py``
for each kind that has simulated controls, added when the site has the kind's devices; the
routes a site gets are the documented ones (docs/simulator-api.md)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from edge.config import parse_config
from edge.devices.registry import KINDS
from simulator.routes import add_site_routes, kind_routes
from tests.support.site import SteppedSite

REPO = Path(__file__).resolve().parent.parent
DOC = (REPO / "docs" / "simulator-api.md").read_text(encoding="utf-8")
DOCUMENTED = set(re.findall(r"^\| \[`(GET|POST) ([^`]+)`\]", DOC, re.M))

SITE = [("GET", "/state"), ("POST", "/inputs/{name}")]
LOCKERS = [
    ("POST", "/lockers/{id}/door"),
    ("POST", "/lockers/{id}/item"),
    ("POST", "/lockers/{id}/jam"),
    ("POST", "/boards/{bus}/{board}"),
    ("POST", "/code-reader"),
    ("GET", "/coils"),
]
MODEM = [("GET", "/modem"), ("POST", "/modem")]


class Recorder:
    """Stands in for the ControlApi: records what is routed."""

    def __init__(self) -> None:
        self.routes: list[tuple[str, str]] = []

    def route(self, method: str, pattern: str, fn: Any) -> None:
        self.routes.append((method, pattern))


def test_every_routes_module_is_named_after_a_registered_kind() -> None:
    modules = {p.stem for p in (REPO / "simulator" / "routes").glob("*.py")} - {"__init__"}
    assert modules <= {k.name for k in KINDS}
    assert [m.__name__ for m in kind_routes()] == [
        f"simulator.routes.{k.name}" for k in KINDS if k.name in modules
    ]


@pytest.fixture
def site_for(tmp_path: Path) -> Iterator[Any]:
    made: list[SteppedSite] = []

    def make(example: str) -> SteppedSite:
        data = yaml.safe_load((REPO / "config" / "examples" / example).read_text("utf-8"))
        data["data_dir"] = str(tmp_path / example)
        data["keys"] = []
        made.append(SteppedSite(parse_config(data)))
        return made[-1]

    yield make
    for s in made:
        s.shutdown()


@pytest.mark.parametrize(
    ("example", "expected"),
    [
        ("shelter.yaml", SITE + MODEM),
        ("locker.yaml", SITE + LOCKERS),
        ("locker-modbus.yaml", SITE + LOCKERS),
    ],
)
def test_a_site_gets_its_kinds_routes_and_only_documented_ones(
    site_for: Any, example: str, expected: list[tuple[str, str]]
) -> None:
    h = site_for(example)
    api = Recorder()
    add_site_routes(api, h.site, h.hw)  # type: ignore[arg-type]
    assert api.routes == expected
    assert set(api.routes) <= DOCUMENTED
