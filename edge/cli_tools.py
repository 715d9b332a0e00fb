"""`ansim-edge watch`, `ansim-edge send` and `ansim-edge scenario` (docs/cli.md): the
technician's tools, so that no other MQTT client is needed."""

from __future__ import annotations

import argparse
import queue
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Any

from edge.core.errors import AnsimError

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_TIMEOUT = 2
TOOLS = ("watch", "send")


def add_parsers(sub: Any) -> None:
    w = sub.add_parser("watch", help="print a site's events, states and results, one per line")
    _site_options(w)
    w.add_argument(
        "--raw", action="store_true", help="print 'TOPIC PAYLOAD' lines instead (as received)"
    )

    s = sub.add_parser("send", help="sign a command, publish it, wait for its result")
    s.add_argument("name", help="command name, e.g. alarm.ack")
    s.add_argument("args", nargs="?", default="{}", help="its args as a JSON object (default {})")
    _site_options(s)
    s.add_argument("--key", required=True, type=Path, help="private key file (PEM)")
    s.add_argument("--key-id", help="key_id (default: the key file's name without .key)")
    s.add_argument(
        "--ttl", type=float, default=300.0, help="seconds until expires_at (default %(default)s)"
    )
    s.add_argument(
        "--timeout",
        type=float,
        default=10.0,
        help="seconds to wait for the result (default %(default)s)",
    )

    c = sub.add_parser("scenario", help="run a scenario (YAML) against a simulated site")
    csub = c.add_subparsers(dest="scenario_cmd", required=True)
    r = csub.add_parser("run", help="start a simulated site, run the scenario, report")
    r.add_argument("file", type=Path)
    r.add_argument("--config", type=Path, help="site config instead of the scenario's config:")
    r.add_argument(
        "--broker", help="use this MQTT broker instead of an embedded one (mqtt://host:port)"
    )
    k = csub.add_parser("check", help="validate a scenario file")
    k.add_argument("file", type=Path)


def _site_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, help="the site's config: site id, topic root, broker")
    p.add_argument(
        "--broker", help="broker URL (default: the config's, else mqtt://127.0.0.1:1883)"
    )
    p.add_argument("--site", help="site id (default: the config's; watch: every site)")
    p.add_argument("--topic-root", help="topic root (default: the config's, else ansim/v1)")


def run(args: argparse.Namespace) -> int:
    """watch and send; `scenario` runs the simulator, so edge.cli (the composition root)
    dispatches it."""
    if args.cmd == "watch":
        return _watch(args)
    return _send(args)


def _target(args: argparse.Namespace, *, need_site: bool) -> tuple[Any, str, str]:
    """(broker config, topic root, site or '+') from --config and the options."""
    from edge.config import load_config
    from edge.tools.centre import broker_config

    cfg = load_config(args.config) if args.config is not None else None
    broker = broker_config(cfg, args.broker)
    root = args.topic_root or (cfg.topic_root if cfg is not None else "ansim/v1")
    site = args.site or (cfg.site.id if cfg is not None else None)
    if site is None:
        if need_site:
            raise AnsimError("say which site: --config FILE or --site ID")
        site = "+"
    return broker, root, site


def _watch(args: argparse.Namespace) -> int:
    from edge.tools.centre import CentreClient, Message
    from edge.tools.render import is_heartbeat, render

    broker, root, site = _target(args, need_site=False)
    lines: queue.Queue[Message | str] = queue.Queue()
    stop = threading.Event()
    client = CentreClient(
        broker,
        root,
        site,
        on_message=lines.put,
        on_link=lambda what: lines.put(f"ansim-edge watch: {what}"),
        record=False,
    )
    client.connect()
    print(f"watching {client.filter} on {client.where} (Ctrl-C to stop)", file=sys.stderr)

    def on_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    # Ctrl-C (SIGINT) and SIGTERM stop it, also when it was started with SIGINT ignored (a
    # background job, nohup): Python raises KeyboardInterrupt only if SIGINT was not ignored.
    previous = {sig: signal.signal(sig, on_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    names: dict[str, str] = {}
    try:
        while not stop.is_set():
            try:
                item = lines.get(timeout=0.2)
            except queue.Empty:
                continue
            if isinstance(item, str):
                print(item, file=sys.stderr, flush=True)
            elif args.raw:
                print(item.topic, item.payload.decode("utf-8", "replace"), flush=True)
            elif not is_heartbeat(item):
                print(render(item, names), flush=True)
    except BrokenPipeError:  # `... | head`: the reader is gone
        sys.stderr.close()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        client.close()
    return EXIT_OK


def _send(args: argparse.Namespace) -> int:
    from edge.core.signing import DuplicateKeyError, load_private_key, loads_strict
    from edge.tools.centre import CentreClient, build_command, default_key_id, send_and_wait
    from edge.tools.render import render

    try:
        cmd_args = loads_strict(args.args)
    except (DuplicateKeyError, ValueError) as exc:
        raise AnsimError(f"send: ARGS is not JSON: {exc}") from None
    if not isinstance(cmd_args, dict):
        raise AnsimError("send: ARGS must be a JSON object, e.g. '{\"locker\": 5}'")
    broker, root, site = _target(args, need_site=True)
    key = load_private_key(args.key)
    key_id = args.key_id or default_key_id(args.key)
    command = build_command(args.name, cmd_args, key, key_id=key_id, site=site, ttl_s=args.ttl)
    with CentreClient(broker, root, site).connect() as client:
        out = send_and_wait(client, site, command, args.timeout)
    if out.result is None:
        status = "no status retained for it (wrong --site or broker?)"
        if out.status is not None and isinstance(out.status.body, dict):
            status = f"its status is {out.status.body.get('state')!r}"
        print(
            f"ansim-edge send: no result for {args.name} (command_id "
            f"{command['command_id']}) from site {site} within {args.timeout:g} s; {status}",
            file=sys.stderr,
        )
        return EXIT_TIMEOUT
    print(out.result.payload.decode("utf-8"))
    print(render(out.result, {command["command_id"]: args.name}), file=sys.stderr)
    return EXIT_OK if out.ok else EXIT_FAILED
