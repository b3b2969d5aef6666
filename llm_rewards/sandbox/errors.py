"""The sandbox's one exception type, :class:`SandboxError`."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


class SandboxError(Exception):
    """A source was rejected, or a sandboxed call broke a limit or raised.

    ``reason`` says what happened in plain words, e.g. ``"line 3: importing 'os' is not allowed
    (only math and numpy are provided)"``, ``"timed out after 2.0 s"``, ``"exceeded the memory
    limit (512 MiB)"``, ``"worker crashed (signal 11: SIGSEGV)"`` or ``"raised ZeroDivisionError:
    division by zero at line 2"``. For a rejected source, ``violations`` lists every violation
    found (``reason`` joins them).
    """

    def __init__(self, reason: str, violations: Iterable[str] = ()) -> None:
        super().__init__(reason)
        self.reason: str = reason
        self.violations: tuple[str, ...] = tuple(violations)

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.reason, self.violations))
