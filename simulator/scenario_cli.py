"""`ansim-edge scenario run|check` (docs/cli.md, docs/scenarios.md): start a simulated
site in this process, on a fresh data dir, behind a link relay (so a scenario can cut its
broker link), run the scenario against it and print the report."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from edge.config import SiteConfig, load_config, parse_config
from edge.core.errors import AnsimError
from edge.tools.centre import broker_config
from simulator.broker import EmbeddedBroker
from simulator.runner import SimRunner
from simulator.scenario import Scenario, load_scenario
from simulator.scenario_run import Report, ScenarioRunner, StepReport, Target

STOP_S = 15.0


def target_for(runner: SimRunner) -> Target:
    """The Target of a running SimRunner: its control API (a cut_link step goes to its
    POST /link), its broker (the real one, not the site's link relay), its dev key."""
    host, port = runner.api.address
    return Target(
        control_url=f"http://{host}:{port}",
        broker=runner.cfg.broker,
        site=runner.cfg.site.id,
        root=runner.cfg.topic_root,
        key=runner.dev_key,
    )


@contextmanager
def simulated_site(config: Path | SiteConfig, broker_url: str | None = None) -> Iterator[Target]:
    """A simulated site for one scenario: the config's devices on a fresh temporary data
    dir, connected (through the simulator's link relay, which cut_link steps cut) to
    ``broker_url`` (default: an embedded broker on a free port), with its control API on a
    free port. Stopped and removed afterwards."""
    cfg = load_config(config) if isinstance(config, Path) else config
    work = Path(tempfile.mkdtemp(prefix="ansim-scenario-"))
    embedded: EmbeddedBroker | None = None
    runner: SimRunner | None = None
    thread: threading.Thread | None = None
    try:
        if broker_url is None:
            embedded = EmbeddedBroker("127.0.0.1", 0)
            embedded.start()
            broker = broker_config(None, embedded.url)
        else:
            broker = broker_config(cfg, broker_url)
            if broker.uses_tls:
                raise AnsimError(
                    "scenario run needs a plain mqtt:// broker (no TLS): its link is cut"
                )
        site_cfg = cfg.model_copy(update={"broker": broker, "data_dir": work / "data"})
        runner = SimRunner(site_cfg, broker_url=broker.url, control="127.0.0.1:0", announce=False)
        thread = threading.Thread(target=runner.run, name="scenario-site", daemon=True)
        thread.start()
        yield target_for(runner)
    finally:
        if runner is not None:
            if runner.link is not None:
                runner.link.restore()  # let the site say goodbye if its link is still cut
            runner.stop_soon()
            if thread is not None:
                thread.join(STOP_S)
        if embedded is not None:
            embedded.stop()
        shutil.rmtree(work, ignore_errors=True)


def run_file(
    path: Path,
    *,
    config: Path | None = None,
    broker_url: str | None = None,
    out: Any = None,
) -> Report:
    """Load the scenario, start its site, run it; print the report to ``out`` as it goes
    (None: print nothing). Returns the report."""
    sc = load_scenario(path)
    cfg_path = config.resolve() if config is not None else sc.config
    return run_scenario(sc, cfg_path, broker_url=broker_url, source=_show(path), out=out)


def run_scenario(
    sc: Scenario,
    cfg_path: Path,
    *,
    broker_url: str | None = None,
    source: str = "",
    out: Any = None,
) -> Report:
    def say(text: str) -> None:
        if out is not None:
            print(text, file=out, flush=True)

    def step_done(rep: StepReport) -> None:
        say(rep.line())

    cfg = config_with(cfg_path, sc.config_overrides)
    with simulated_site(cfg, broker_url) as target:
        runner = ScenarioRunner(
            sc, target, source=source, config=_show(cfg_path), on_step=step_done
        )
        say(runner.report.header())
        report = runner.run()
    for rep in report.steps:
        if rep.status == "skip":
            say(rep.line())
    say(report.footer())
    return report


def merged(base: Any, over: Any) -> Any:
    """``over`` on top of ``base``: mappings key by key, anything else replaced."""
    if isinstance(base, dict) and isinstance(over, dict):
        return {**base, **{k: merged(base.get(k), v) for k, v in over.items()}}
    return over


def config_with(path: Path, overrides: dict[str, Any] | None) -> SiteConfig:
    """The site config at ``path`` with a scenario's ``config_overrides`` merged in,
    validated as a whole (errors name the config file and the field)."""
    if not overrides:
        return load_config(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return load_config(path)  # says what is wrong with the file
    return parse_config(merged(data, overrides), path)


def _show(path: Path) -> str:
    try:
        return os.path.relpath(path)
    except ValueError:
        return str(path)


def scenario_command(args: argparse.Namespace) -> int:
    if args.scenario_cmd == "check":
        sc = load_scenario(args.file)
        print(f"{args.file}: ok ({len(sc.steps)} steps; site config {_show(sc.config)})")
        return 0
    try:
        report = run_file(args.file, config=args.config, broker_url=args.broker, out=sys.stdout)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 1
    return 0 if report.ok else 1
