"""``ansim-edge run`` on a machine without GPIO, for measurements:

    python -m bench.mock_gpio_run run --config FILE [--broker URL]

Exactly the ``run`` code path of ``edge.cli`` (real drivers, real serial devices, no
simulator module), except that gpiozero's ``MockFactory`` stands in for the Raspberry Pi's
pin factory (``run`` itself refuses it). With ``ANSIM_MODULES_FILE`` set, the sorted names
of every imported module (not the stand-ins of ``edge.runtime.defer_unused_imports``) are
written to that file once the site has started (tests/test_run_imports.py reads it).
"""

from __future__ import annotations

import os
import sys
from typing import Any


def _mock_factory() -> Any:
    from gpiozero.pins.mock import MockFactory

    return MockFactory()


def main() -> int:
    from edge.runtime import defer_unused_imports, is_deferred, without_pretty_printers

    without_pretty_printers()  # as edge.cli does for run, before structlog is imported
    defer_unused_imports()
    import drivers.gpio
    import edge.site

    drivers.gpio.real_pin_factory = _mock_factory
    out = os.environ.get("ANSIM_MODULES_FILE")
    if out:
        start = edge.site.Site.start

        def start_and_dump(site: edge.site.Site) -> None:
            start(site)
            tmp = out + ".tmp"
            with open(tmp, "w", encoding="utf-8") as f:
                loaded = (k for k, v in sys.modules.items() if v and not is_deferred(v))
                f.write("\n".join(sorted(loaded)) + "\n")
            os.replace(tmp, out)

        edge.site.Site.start = start_and_dump  # type: ignore[method-assign]

    from edge.cli import main as cli_main

    return cli_main()


if __name__ == "__main__":
    sys.exit(main())
