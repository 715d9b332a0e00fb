"""Scenarios from the simulator's control API and console (docs/simulator-api.md,
"Scenarios"): list the shipped scenarios, run one against this very simulator (in the
background; one at a time) and follow its steps, also on the console's event stream
(``scenario`` events)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from edge.config import load_config
from edge.core.errors import AnsimError
from simulator.control import ApiError, ControlApi
from simulator.scenario import Scenario, load_scenario, scenario_dir
from simulator.scenario_run import Report, ScenarioRunner, StepReport, Target

if TYPE_CHECKING:
    from simulator.runner import SimRunner

log = structlog.get_logger(__name__)


class ScenarioService:
    def __init__(self, runner: SimRunner, directory: Path | None = None) -> None:
        self.runner = runner
        self.directory = directory or scenario_dir()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._current: ScenarioRunner | None = None
        self._file: str | None = None
        self._last: dict[str, Any] | None = None

    def routes(self, api: ControlApi) -> None:
        api.route("GET", "/scenarios", lambda p, b: (200, self.listing()))
        api.route("GET", "/scenarios/run", lambda p, b: (200, {"run": self.run_state()}))
        api.route("POST", "/scenarios/run", self._post_run)

    # ---- listing ----
    def files(self) -> list[Path]:
        return sorted(self.directory.glob("*.yaml"))

    def listing(self) -> dict[str, Any]:
        site = self.runner.cfg.site.id
        out = []
        for path in self.files():
            entry: dict[str, Any] = {"file": path.name}
            try:
                sc = load_scenario(path)
                for_site = load_config(sc.config).site.id
            except AnsimError as exc:
                entry["error"] = str(exc)
            else:
                entry.update(
                    name=sc.name,
                    description=sc.description,
                    steps=len(sc.steps),
                    config=sc.config.name,
                    site=for_site,
                    fits=for_site == site,
                )
            out.append(entry)
        return {"site": site, "scenarios": out, "run": self.run_state()}

    # ---- running ----
    def run_state(self) -> dict[str, Any] | None:
        with self._lock:
            current, file, last = self._current, self._file, self._last
        if current is None:
            return last
        return {"file": file, "running": True, **current.report.as_dict()}

    def _post_run(self, params: dict[str, str], body: Any) -> tuple[int, Any]:
        name = body.get("file") if isinstance(body, dict) else None
        if not isinstance(name, str):
            raise ApiError(400, 'body must be {"file": "<a scenario file name>"}')
        path = next((p for p in self.files() if p.name == name), None)
        if path is None:
            raise ApiError(404, f"no scenario {name!r}; see GET /scenarios")
        try:
            sc = load_scenario(path)
            for_site = load_config(sc.config).site.id
        except AnsimError as exc:
            raise ApiError(400, str(exc)) from None
        site = self.runner.cfg.site.id
        if for_site != site:
            raise ApiError(
                409, f"{name} is for site {for_site} ({sc.config.name}); this simulator runs {site}"
            )
        with self._lock:
            if self._current is not None:
                raise ApiError(409, f"a scenario is running: {self._file}")
            scenario_runner = ScenarioRunner(
                sc,
                self.target(),
                source=f"simulator/scenarios/{name}",
                config=sc.config.name,
                on_step=lambda rep: self._step(name, rep),
                stop=self._stop,
            )
            self._current, self._file = scenario_runner, name
            self._thread = threading.Thread(
                target=self._run, args=(name, sc, scenario_runner), name="sim-scenario", daemon=True
            )
            self._thread.start()
        return 202, {"started": name, "steps": len(sc.steps)}

    def target(self) -> Target:
        runner = self.runner
        host, port = runner.api.address
        return Target(
            control_url=f"http://{host}:{port}",
            broker=runner.cfg.broker,  # the real broker, as the centre sees it
            site=runner.cfg.site.id,
            root=runner.cfg.topic_root,
            key=runner.dev_key,
            cut_link=None,  # through this simulator's own POST /link
        )

    def _run(self, name: str, sc: Scenario, scenario_runner: ScenarioRunner) -> None:
        self._publish({"file": name, "name": sc.name, "started": len(sc.steps)})
        log.info("scenario_started", file=name)
        report: Report | None = None
        try:
            report = scenario_runner.run()
        except Exception as exc:  # never leave the service thinking one is running
            log.exception("scenario_failed", file=name)
            scenario_runner.report.error = f"{type(exc).__name__}: {exc}"
            report = scenario_runner.report
        finally:
            assert report is not None
            done = {"file": name, "running": False, **report.as_dict(), "summary": report.footer()}
            with self._lock:
                self._current, self._file, self._last = None, None, done
            log.info("scenario_done", file=name, ok=report.ok)
            self._publish({"file": name, "done": done})

    def _step(self, name: str, rep: StepReport) -> None:
        self._publish({"file": name, "step": _step_dict(rep)})

    def _publish(self, data: dict[str, Any]) -> None:
        console = getattr(self.runner, "console", None)
        if console is not None:
            console.hub.publish("scenario", data)

    def close(self) -> None:
        self._stop.set()
        thread = self._thread
        if thread is not None:
            thread.join(5)


def _step_dict(rep: StepReport) -> dict[str, Any]:
    return {
        "number": rep.number,
        "action": rep.action,
        "text": rep.text,
        "status": rep.status,
        "at_s": round(rep.at_s, 3),
        "took_s": round(rep.took_s, 3),
        "detail": rep.detail,
    }
