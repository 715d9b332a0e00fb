"""Deferred command handlers: the slow part runs off the core thread, exactly one result
per message still holds, a replay while it runs is answered when it ends."""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from edge.config import TrustedKey
from edge.core.clock import FakeClock
from edge.core.commands import CommandProcessor, Deferred, LoadedKey, load_keys
from edge.core.errors import CommandError
from edge.core.signing import generate_keypair, load_private_key, sign_command
from edge.core.store import Store

EXPIRES = "2026-01-01T00:05:00Z"  # FakeClock starts at 2026-01-01T00:00:00Z


class Args(BaseModel):
    n: int


class Rig:
    """A processor whose ``post`` goes to a queue the test drains, as the core loop would."""

    def __init__(self, tmp_path: Path) -> None:
        generate_keypair(tmp_path / "c.key", tmp_path / "c.pub")
        self.key = load_private_key(tmp_path / "c.key")
        keys: dict[str, LoadedKey] = load_keys(
            [TrustedKey(key_id="centre", public_key=tmp_path / "c.pub", commands=["*"])]
        )
        self.store = Store(tmp_path / "s.db")
        self.jobs: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self.results: list[dict[str, Any]] = []
        self.proc = CommandProcessor(
            keys,
            self.store,
            FakeClock(),
            site_id="shelter-0001",
            max_payload_bytes=16384,
            send_result=lambda b: self.results.append(json.loads(b)),
            post=self.jobs.put,
        )
        self.gate = threading.Event()
        self.work_threads: list[str] = []
        self.finished: list[Any] = []

    def handler(self, args: Args, ctx: Any) -> Deferred:
        def work() -> int:
            self.work_threads.append(threading.current_thread().name)
            assert self.gate.wait(10)
            if args.n < 0:
                raise ValueError("negative")
            return args.n * 2

        def finish(value: int) -> dict[str, Any]:
            self.finished.append(threading.current_thread().name)
            if value == 0:
                raise CommandError("wrong_state", "zero")
            return {"doubled": value}

        return Deferred(work=work, finish=finish)

    def send(self, n: int, command_id: str = "c-1") -> None:
        cmd = {
            "command_id": command_id,
            "site": "shelter-0001",
            "name": "site.slow",
            "args": {"n": n},
            "expires_at": EXPIRES,
            "key_id": "centre",
        }
        self.proc.handle("site/slow", json.dumps(sign_command(cmd, self.key)).encode())

    def run_core(self, jobs: int = 1) -> None:
        for _ in range(jobs):
            self.jobs.get(timeout=10)()


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    r = Rig(tmp_path)
    r.proc.register("site.slow", Args, r.handler)
    yield r
    r.gate.set()
    r.proc.close()
    r.store.close()


def test_slow_work_runs_off_the_calling_thread_and_the_result_follows(rig: Rig) -> None:
    rig.send(21)
    assert rig.results == []  # handle() returned without waiting for the work
    rig.gate.set()
    rig.run_core()
    assert [r["data"] for r in rig.results] == [{"doubled": 42}]
    assert rig.work_threads and rig.work_threads[0] != threading.current_thread().name
    assert rig.finished == [threading.current_thread().name]  # finish on the "core" thread


def test_replay_while_running_gets_the_same_result_and_runs_once(rig: Rig) -> None:
    rig.send(5)
    rig.send(5)  # the centre retries before the first finished
    assert rig.results == []
    rig.gate.set()
    rig.run_core()
    assert len(rig.results) == 2 and rig.results[0] == rig.results[1]
    assert len(rig.work_threads) == 1
    rig.send(5)  # and later replays come from the store
    assert len(rig.results) == 3 and rig.results[2] == rig.results[0]
    assert len(rig.work_threads) == 1


def test_work_failure_and_finish_refusal_are_results(rig: Rig) -> None:
    rig.gate.set()
    rig.send(-1, "c-neg")
    rig.run_core()
    rig.send(0, "c-zero")
    rig.run_core()
    assert (
        rig.results[0]["error"]["code"] == "failed"
        and "negative" in rig.results[0]["error"]["message"]
    )
    assert rig.results[1]["error"]["code"] == "wrong_state"
