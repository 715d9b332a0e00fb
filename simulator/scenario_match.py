"""How a scenario's expectations match what the site sent (docs/scenarios.md, Matching):
mappings as subsets, lists item by item, operators (``gt``, ``regex``, ``any_of``, ...) on
values, and a path into a message body. Pure: used by :mod:`simulator.scenario_run`."""

from __future__ import annotations

import json
import re
from typing import Any

from simulator.scenario import OPERATORS

MISSING = object()


def short(v: Any, limit: int = 160) -> str:
    text = json.dumps(v, ensure_ascii=False, separators=(",", ":"), default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def mismatch(expected: Any, actual: Any, path: str = "") -> str | None:
    """None when ``actual`` matches ``expected`` (docs/scenarios.md, Matching), else why
    not. Mappings match as subsets; a mapping of operators tests the value."""
    where = path or "value"
    if isinstance(expected, dict) and expected and all(k in OPERATORS for k in expected):
        for op, arg in expected.items():
            why = _operator(op, arg, actual)
            if why is not None:
                return f"{where}: {why}"
        return None
    if actual is MISSING:
        return f"{where}: missing (expected {short(expected)})"
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return f"{where}: expected an object, got {short(actual)}"
        for k, v in expected.items():
            why = mismatch(v, actual.get(k, MISSING), f"{path}.{k}" if path else str(k))
            if why is not None:
                return why
        return None
    if isinstance(expected, list):
        if not isinstance(actual, list) or len(actual) != len(expected):
            return f"{where}: expected {short(expected)}, got {short(actual)}"
        for i, (e, a) in enumerate(zip(expected, actual, strict=True)):
            why = mismatch(e, a, f"{path}[{i}]")
            if why is not None:
                return why
        return None
    if isinstance(expected, bool) != isinstance(actual, bool) or expected != actual:
        return f"{where}: expected {short(expected)}, got {short(actual)}"
    return None


def _number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _operator(op: str, arg: Any, actual: Any) -> str | None:
    if op == "present":
        there = actual is not MISSING and actual is not None
        return None if there == bool(arg) else ("missing or null" if arg else f"is {short(actual)}")
    if actual is MISSING:
        return f"missing (expected {op} {short(arg)})"
    if op == "regex":
        ok = isinstance(actual, str) and re.search(str(arg), actual) is not None
        return None if ok else f"{short(actual)} does not match /{arg}/"
    if op == "not":
        return None if mismatch(arg, actual) is not None else f"is {short(actual)} (expected not)"
    if op == "any_of":
        options = arg if isinstance(arg, list) else [arg]
        ok = any(mismatch(o, actual) is None for o in options)
        return None if ok else f"{short(actual)} is none of {short(options)}"
    if not (_number(actual) and _number(arg)):
        return f"{short(actual)} is not a number to compare ({op} {short(arg)})"
    ok = {
        "gt": actual > arg,
        "ge": actual >= arg,
        "lt": actual < arg,
        "le": actual <= arg,
    }[op]
    return None if ok else f"{actual} is not {op} {arg}"


def dig(obj: Any, path: str) -> Any:
    """``data.alarm_id`` in a message body."""
    for part in path.split("."):
        if isinstance(obj, dict) and part in obj:
            obj = obj[part]
        elif isinstance(obj, list) and part.isdigit() and int(part) < len(obj):
            obj = obj[int(part)]
        else:
            return MISSING
    return obj
