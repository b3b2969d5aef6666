"""Results: numbers, lists of numbers, small dicts of numbers. The worker converts what user
code returns to plain JSON-able values (refusing anything else or too much); the parent re-checks
the decoded reply."""

from __future__ import annotations

from typing import Any

import numpy as np

from .errors import SandboxError

_MAX_DEPTH = 3
_INT_RANGE = (-(2**63), 2**64)


class _OutputError(Exception):
    """The user function returned something the sandbox refuses to send back."""


def _describe(value: Any) -> str:
    if value is None:
        return "None (did the function forget to return?)"
    if isinstance(value, str | bytes):
        return f"a {type(value).__name__} of length {len(value)}"
    if isinstance(value, np.ndarray):
        return f"an array of dtype {value.dtype} and shape {value.shape}"
    return f"a value of type {type(value).__name__}"


def _number(value: Any) -> bool | int | float | None:
    """The plain Python number ``value`` stands for, or None if it is not a real number."""
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value[()]
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        number = int(value)
        if not _INT_RANGE[0] <= number < _INT_RANGE[1]:
            raise _OutputError("returned an integer that does not fit in 64 bits")
        return number
    if isinstance(value, float | np.floating):
        return float(value)
    return None


def _plain(value: Any, returns: str, budget: list[int]) -> Any:
    """Convert ``value`` to JSON-able numbers/lists/dicts, refusing anything else or too much.

    ``budget[0]`` counts down the values still allowed in this reply (``budget[1]`` is the byte
    cap), so a huge list is refused from its length, before anything is copied.
    """
    if returns == "float":
        number = _number(value)
        if number is None:
            raise _OutputError(f"returned {_describe(value)}; expected a single number")
        _spend(budget, 1)
        return float(number)
    if returns == "floats":
        if isinstance(value, np.ndarray) and value.ndim != 1:
            raise _OutputError(f"returned {_describe(value)}; expected a flat list of numbers")
        if not isinstance(value, list | tuple | np.ndarray):
            raise _OutputError(f"returned {_describe(value)}; expected a list of numbers")
        _spend(budget, len(value))
        out = []
        for index, item in enumerate(value.tolist() if isinstance(value, np.ndarray) else value):
            number = _number(item)
            if number is None:
                raise _OutputError(f"returned a list holding {_describe(item)} at index {index}; "
                                   "expected numbers only")
            out.append(float(number))
        return out
    return _plain_any(value, budget, 0)


def _spend(budget: list[int], count: int) -> None:
    budget[0] -= count
    if budget[0] < 0:
        what = f" ({count} values in one container)" if count > 1 else ""
        raise _OutputError(f"output too large: the results do not fit the "
                           f"{_format_bytes(budget[1])} limit per call{what}")


def _plain_any(value: Any, budget: list[int], depth: int) -> Any:
    number = _number(value)
    if number is not None:
        _spend(budget, 1)
        return number
    if depth >= _MAX_DEPTH:
        raise _OutputError(f"returned values nested more than {_MAX_DEPTH} levels deep")
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "biuf":
            raise _OutputError(f"returned {_describe(value)}; expected numbers")
        if value.ndim > _MAX_DEPTH - depth:
            raise _OutputError(f"returned values nested more than {_MAX_DEPTH} levels deep")
        _spend(budget, value.size)
        return value.tolist()
    if isinstance(value, list | tuple):
        _spend(budget, len(value))
        return [_plain_any(item, budget, depth + 1) for item in value]
    if isinstance(value, dict):
        _spend(budget, len(value))
        out = {}
        for key, item in value.items():
            if not isinstance(key, str) or len(key) > 100:
                raise _OutputError("returned a dict whose keys are not short strings")
            out[key] = _plain_any(item, budget, depth + 1)
        return out
    raise _OutputError(f"returned {_describe(value)}; expected a number, a list of numbers "
                       "or a dict of numbers")


def _check_reply(value: Any, returns: str, depth: int = 0) -> Any:
    """Re-check in the parent what the worker sent (JSON already: no code can come with it)."""
    if returns == "float":
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    elif returns == "floats":
        if isinstance(value, list) and all(isinstance(v, int | float) for v in value):
            return [float(v) for v in value]
    elif isinstance(value, bool | int | float):
        return value
    elif depth < _MAX_DEPTH and isinstance(value, list):
        return [_check_reply(v, returns, depth + 1) for v in value]
    elif depth < _MAX_DEPTH and isinstance(value, dict):
        return {str(k): _check_reply(v, returns, depth + 1) for k, v in value.items()}
    raise SandboxError("the worker sent back a malformed result")


def _format_bytes(count: int) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if count >= size and count % size == 0:
            return f"{count // size} {unit}"
    return f"{count} bytes"
