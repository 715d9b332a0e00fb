"""The `ansim-edge` command line (docs/cli.md)."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, Literal

from edge import __version__, cli_tools
from edge.core.errors import AnsimError, ConfigError

if TYPE_CHECKING:
    from edge.config import SiteConfig

EXIT_OK = 0
EXIT_INVALID = 1
EXIT_USAGE = 2


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ansim-edge", description="ansim-edge site controller")
    p.add_argument("--version", action="version", version=f"ansim-edge {__version__}")
    p.add_argument(
        "--log-level",
        default=None,
        choices=["debug", "info", "warning", "error"],
        help="default info (warning for `scenario`)",
    )
    p.add_argument(
        "--log-format",
        default="auto",
        choices=["auto", "json", "console"],
        help="auto (default): JSON for `run` when stderr is not a terminal, else human-readable",
    )
    sub = p.add_subparsers(dest="cmd", required=True)

    for name, helptext in (
        ("run", "run the site on real hardware"),
        ("sim", "run the site on simulated hardware with a control API"),
    ):
        s = sub.add_parser(name, help=helptext)
        s.add_argument("--config", required=True, type=Path)
        s.add_argument(
            "--broker",
            help="override broker.url / broker.urls (one address), e.g. mqtt://host:1883",
        )
        s.add_argument("--data-dir", type=Path, help="override data_dir")
        s.add_argument(
            "--force",
            action="store_true",
            help="use a data dir last used by `%s` anyway" % ("sim" if name == "run" else "run"),
        )
        if name == "sim":
            s.add_argument(
                "--control",
                default="127.0.0.1:8765",
                help="control API HOST:PORT (default %(default)s)",
            )
            s.add_argument(
                "--embedded-port",
                type=int,
                default=None,
                help="port of the embedded broker when --broker is not given "
                "(default 1883, or a free port when 1883 is taken; 0 = any free port)",
            )

    o = sub.add_parser(
        "safe-outputs",
        help="drive every configured solenoid, lamp and buzzer output off (no daemon)",
    )
    o.add_argument("--config", required=True, type=Path)

    st = sub.add_parser(
        "status",
        help="print the running daemon's status from its status file (no broker needed)",
    )
    st.add_argument("--config", required=True, type=Path)
    st.add_argument("--data-dir", type=Path, help="override data_dir")
    st.add_argument("--file", type=Path, help="read this status file instead")
    st.add_argument("--json", action="store_true", help="print the status file as it is")

    c = sub.add_parser("check-config", help="validate a config file (exit 0 valid, 1 invalid)")
    c.add_argument("file", type=Path)

    k = sub.add_parser("keygen", help="write an Ed25519 key pair (PREFIX.key, PREFIX.pub)")
    k.add_argument("prefix", type=Path, help="path prefix, e.g. keys/centre")

    g = sub.add_parser("sign", help="sign a command JSON read on stdin, print it signed")
    g.add_argument("--key", required=True, type=Path, help="private key file (PEM)")
    g.add_argument("--key-id", required=True)
    g.add_argument("--site", required=True, help="site.id of the one site the command is for")
    g.add_argument(
        "--ttl",
        type=float,
        default=300.0,
        help="seconds until expires_at when the command has none (default %(default)s)",
    )
    cli_tools.add_parsers(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.cmd in ("run", "sim"):
        from edge.runtime import defer_unused_imports, without_pretty_printers

        without_pretty_printers()  # before structlog is imported (edge.logs)
        if args.cmd == "run":  # `sim` uses asyncio (its embedded broker)
            defer_unused_imports()
    from edge.logs import configure, wants_json

    level = args.log_level or ("warning" if args.cmd == "scenario" else "info")
    configure(level, json=wants_json(args.log_format, command=args.cmd))
    try:
        if args.cmd == "check-config":
            return _check_config(args.file)
        if args.cmd == "keygen":
            return _keygen(args.prefix)
        if args.cmd == "sign":
            return _sign(args)
        if args.cmd == "run":
            return _run(args, simulated=False)
        if args.cmd == "sim":
            return _run(args, simulated=True)
        if args.cmd == "safe-outputs":
            return _safe_outputs(args.config)
        if args.cmd == "status":
            return _status(args)
        if args.cmd in cli_tools.TOOLS:
            return cli_tools.run(args)
        if args.cmd == "scenario":
            from simulator.scenario_cli import scenario_command

            return scenario_command(args)
    except AnsimError as exc:
        print(f"ansim-edge: {exc}", file=sys.stderr)
        return EXIT_INVALID
    return EXIT_USAGE


def _check_config(path: Path) -> int:
    from edge.config import check_files, config_warnings, load_config

    try:
        cfg = load_config(path)
        check_files(cfg, path)
    except AnsimError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_INVALID
    print(f"{path}: ok (site {cfg.site.id}, {len(cfg.keys)} trusted key(s))")
    if not cfg.keys:
        print("note: no trusted keys: `run` will refuse to start; `sim` creates a development key")
    for where, msg in config_warnings(cfg):
        print(f"warning: {where}: {msg}", file=sys.stderr)
    return EXIT_OK


def _keygen(prefix: Path) -> int:
    from edge.core.signing import generate_keypair

    priv, pub = prefix.with_name(prefix.name + ".key"), prefix.with_name(prefix.name + ".pub")
    generate_keypair(priv, pub)
    print(f"private key: {priv} (keep it off the device)\npublic key:  {pub}")
    return EXIT_OK


def _sign(args: argparse.Namespace) -> int:
    from edge.core.clock import rfc3339
    from edge.core.signing import DuplicateKeyError, load_private_key, loads_strict, sign_command

    key = load_private_key(args.key)
    try:
        cmd: Any = loads_strict(sys.stdin.read())
    except DuplicateKeyError as exc:
        print(f"ansim-edge sign: stdin has a {exc}; name each key once", file=sys.stderr)
        return EXIT_INVALID
    except ValueError as exc:
        print(f"ansim-edge sign: stdin is not JSON: {exc}", file=sys.stderr)
        return EXIT_INVALID
    if not isinstance(cmd, dict) or "name" not in cmd:
        print('ansim-edge sign: stdin must be a JSON object with at least "name"', file=sys.stderr)
        return EXIT_INVALID
    cmd.setdefault("command_id", str(uuid.uuid4()))
    cmd.setdefault("args", {})
    cmd.setdefault("expires_at", rfc3339(datetime.now(UTC) + timedelta(seconds=args.ttl)))
    cmd["key_id"] = args.key_id
    cmd["site"] = args.site
    print(json.dumps(sign_command(cmd, key), ensure_ascii=False))
    return EXIT_OK


def _run(args: argparse.Namespace, *, simulated: bool) -> int:
    import structlog

    from edge.runtime import tune_interpreter
    from edge.site import Site

    log = structlog.get_logger("ansim-edge")
    tune_interpreter()
    mode: Literal["run", "sim"] = "sim" if simulated else "run"
    cfg = _checked_config(args, simulated=simulated, log=log)
    if not simulated:
        from drivers.gpio import GpioHardware, real_pin_factory
        from edge.health import status_file_path
        from edge.reload import Reloader
        from edge.service import attach

        factories = [real_pin_factory()]  # no GPIO: one line and exit 1, before anything else
        _record_mode(cfg.data_dir, mode, log)

        def build(c: SiteConfig) -> tuple[Site, Any, Any]:
            hardware = GpioHardware(factories.pop() if factories else real_pin_factory())
            try:
                site = Site(c, hardware, status_file=status_file_path(c.data_dir))
            except BaseException:
                hardware.close()
                raise
            # Under systemd: READY, watchdog pings, STATUS, STOPPING (no-op elsewhere).
            return site, attach(site) or site, hardware

        def load() -> SiteConfig:  # SIGHUP: the same checks as at start
            return _checked_config(args, simulated=False, log=log)

        # The reloader closes each site's hardware when that site has stopped (and is what
        # _serve closes at the end).
        reloader = Reloader(cfg, args.config, load=load, build=build)
        return _serve(reloader, reloader, log)

    from edge.config import load_config
    from simulator.runner import SimRunner

    runner = SimRunner(
        cfg,
        broker_url=args.broker,
        control=args.control,
        embedded_port=args.embedded_port,
        config_path=args.config,
        prog=_prog(),
        # the file's broker URL, before --broker: what `watch --config` connects to
        config_broker_url=load_config(args.config).broker.url,
    )
    _record_mode(cfg.data_dir, mode, log)
    return _serve(runner, None, log)


def _checked_config(args: argparse.Namespace, *, simulated: bool, log: Any) -> SiteConfig:
    """The config `run`/`sim` start with (and `run` reads again on SIGHUP), with the command
    line's overrides, checked; AnsimError (every problem at once) when it cannot be used."""
    from edge.config import check_files, config_warnings, load_config, with_overrides
    from edge.datadir import check_mode

    cfg = with_overrides(load_config(args.config), broker_url=args.broker, data_dir=args.data_dir)
    if not simulated and not cfg.keys:
        raise ConfigError(
            f"{args.config}: keys: at least one trusted command key is required for `run` "
            "(make one with `ansim-edge keygen`); only `sim` creates a development key"
        )
    # Everything the config names that would otherwise fail deep inside the start, with a
    # traceback. `sim` without --broker runs its own broker: the TLS files are not used.
    # An unusable data dir is not among them: the site starts degraded and reports it.
    check_files(
        cfg, args.config, broker_files=not simulated or args.broker is not None, data_dir=False
    )
    if not simulated:
        from edge.filemodes import check_file_modes

        check_file_modes(cfg, args.config)  # secrets others can read, keys they can write
    for where, msg in config_warnings(cfg):
        log.warning("config_warning", field=where, problem=msg)
    check_mode(cfg.data_dir, "sim" if simulated else "run", force=args.force)
    return cfg


def _record_mode(data_dir: Path, mode: Literal["run", "sim"], log: Any) -> None:
    from edge.datadir import record_mode

    problem = record_mode(data_dir, mode)
    if problem is not None:
        log.warning("data_dir_mode_not_recorded", data_dir=str(data_dir), error=problem)


def _prog() -> str:
    """How this program was started, for the commands the banner suggests:
    ``.venv/bin/ansim-edge`` when run from there, else ``ansim-edge``."""
    argv0 = Path(sys.argv[0])
    if argv0.name != "ansim-edge" or "/" not in sys.argv[0]:
        return "ansim-edge"
    try:
        return str(argv0.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(argv0)


def _serve(target: Any, hardware: Any, log: Any) -> int:
    # The handler only records the signal and sets an event: it runs on the main thread
    # between two bytecodes, possibly while that thread holds the log writer's lock (or a
    # queue's), so logging or posting from it could deadlock. A helper thread does both.
    received: list[int] = []
    wake = threading.Event()
    done = False

    def on_signal(signum: int, frame: FrameType | None) -> None:
        received.append(signum)
        wake.set()

    def stopper() -> None:
        while True:
            wake.wait()
            wake.clear()
            if done:
                return
            while received:
                signum = received.pop(0)
                if signum != signal.SIGHUP:
                    log.info("signal", signal=signal.Signals(signum).name)
                    target.stop_soon()
                elif hasattr(target, "reload"):  # run: re-read the config
                    log.info("signal", signal="SIGHUP")
                    target.reload()
                else:
                    log.info("signal_ignored", signal="SIGHUP", reason="sim does not reload")

    threading.Thread(target=stopper, name="ansim-signal", daemon=True).start()
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    try:
        target.run()
    finally:
        done = True
        wake.set()
        if hardware is not None:
            hardware.close()
    return EXIT_OK


def _safe_outputs(config: Path) -> int:
    from drivers.gpio import real_pin_factory
    from edge.config import load_config
    from edge.core.errors import GpioUnavailableError
    from edge.safe_outputs import (
        configured_outputs,
        describe,
        describe_board,
        drive_off,
        modbus_off,
    )

    cfg = load_config(config)
    outputs = configured_outputs(cfg)
    failed = False
    if outputs:  # GPIO first: instant, and the Modbus pass below takes up to seconds
        try:
            factory = real_pin_factory()
        except GpioUnavailableError as exc:
            print(f"ansim-edge: {exc}", file=sys.stderr)
            failed = True
        else:
            for result in drive_off(outputs, factory):
                failed |= result.error is not None
                print(describe(result), file=sys.stderr if result.error else sys.stdout)
    boards = modbus_off(cfg)
    for board in boards:
        failed |= board.error is not None
        print(describe_board(board), file=sys.stderr if board.error else sys.stdout)
    if not outputs and not boards:
        print(
            f"{config}: no GPIO outputs or Modbus relay boards configured "
            "(CU16 boards time their own pulses)"
        )
    return EXIT_INVALID if failed else EXIT_OK


RUNTIME_DIR = Path("/run/ansim-edge")  # systemd/ansim-edge.service: RuntimeDirectory=


def _status(args: argparse.Namespace) -> int:
    import time

    from edge.config import load_config, with_overrides
    from edge.health import STALE_S, render_status, status_candidates

    if args.file is not None:
        candidates = [args.file]
    else:
        cfg = with_overrides(load_config(args.config), data_dir=args.data_dir)
        candidates = status_candidates(cfg.data_dir, RUNTIME_DIR)
    found = []
    for path in candidates:
        try:
            found.append((path.stat().st_mtime, path))
        except OSError:
            continue
    if not found:
        looked = ", ".join(str(p) for p in candidates)
        print(
            f"ansim-edge: no status file ({looked}): the daemon is not running "
            "(see `systemctl status ansim-edge`)",
            file=sys.stderr,
        )
        return EXIT_INVALID
    mtime, path = max(found)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except PermissionError:
        print(f"ansim-edge: cannot read {path}: permission denied (use sudo)", file=sys.stderr)
        return EXIT_INVALID
    except (OSError, ValueError) as exc:
        print(f"ansim-edge: cannot read {path}: {exc}", file=sys.stderr)
        return EXIT_INVALID
    age = max(0.0, time.time() - mtime)
    if args.json:
        print(json.dumps(doc, ensure_ascii=False))
    else:
        print("\n".join(render_status(doc, path, age)))
    if age > STALE_S:
        print(
            f"ansim-edge: {path} is {age:.0f} s old (rewritten every 5 s while the daemon "
            "runs): the daemon is hung or was killed",
            file=sys.stderr,
        )
        return EXIT_INVALID
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
