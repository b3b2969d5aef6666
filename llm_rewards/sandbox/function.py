"""The parent side: :class:`_Worker` (one worker program shared by the functions that have the
same limits in this process), :class:`SandboxedFunction` and :func:`load_function`."""

from __future__ import annotations

import itertools
import json
import os
import pickle
import threading
from collections.abc import Iterable, Mapping
from typing import Any, Literal

from ..child import ChildError, ChildProgram, describe_exit, exit_signal
from .errors import SandboxError
from .results import _check_reply
from .static_check import check_source

Returns = Literal["any", "float", "floats"]
WORKER_MODULE = "align_gym.llm_rewards.sandbox.worker"


def _death_words(error: ChildError, options: Mapping[str, Any], when: str) -> str:
    name = exit_signal(error.returncode)
    if name == "SIGXCPU":
        words = f"exceeded the CPU time limit ({options['cpu_seconds']} s)"
    elif name == "SIGXFSZ":
        words = f"worker crashed (signal {-error.returncode}: SIGXFSZ, it tried to write a file)"
    elif name == "SIGKILL":
        words = f"worker crashed (signal {-error.returncode}: SIGKILL, possibly killed for memory use)"
    elif error.reason.startswith("the child exited"):
        words = "worker " + describe_exit(error.returncode)
    else:  # a timeout or an oversized reply: the reason says it
        words = error.reason.replace("reply too large", "output too large")
        return words if not when or when in words else f"{words} {when}"
    return f"{words} {when}".strip()


class _LoadError(SandboxError):
    """The source's top-level code failed in the worker: it would fail the same way again."""


class _Worker:
    """One worker program, serving every function with the same limits in this process; each is
    loaded on first use (and again in a replacement worker). Calls are serialised by its lock."""

    def __init__(self, options: dict[str, Any], startup_timeout: float) -> None:
        self.options = options
        self.lock = threading.Lock()
        self.loaded: set[int] = set()
        self.child = ChildProgram(WORKER_MODULE)
        try:
            self.expect(self.child.request(json.dumps(options).encode(), startup_timeout, 1 << 16,
                                           "while starting"), "booted")
        except ChildError as error:
            self.child.stop(graceful=False)
            raise SandboxError(_death_words(error, options, "while starting")) from None

    @property
    def pid(self) -> int:
        return self.child.pid

    def alive(self) -> bool:
        return self.child.alive()

    def stop(self) -> None:
        self.child.stop(graceful=False)

    def expect(self, data: bytes, stage: str) -> None:
        reply = _decode(data, self)
        if not reply.get("ok"):
            if reply.get("retire"):
                self.stop()
            raise SandboxError(str(reply.get("error", "the worker failed"))[:1000])
        if reply.get("stage") != stage:
            self.stop()
            raise SandboxError("the worker sent back a malformed reply")

    def load(self, function: SandboxedFunction, timeout: float) -> None:
        request = {"op": "load", "id": function.id, "source": function.source, "name": function.name}
        try:
            data = self.child.request(json.dumps(request).encode(), timeout, 1 << 16, "while loading")
        except ChildError as error:
            raise _LoadError(_death_words(error, self.options, "while loading")) from None
        try:
            self.expect(data, "loaded")
        except SandboxError as exc:
            raise _LoadError(exc.reason) from None
        self.loaded.add(function.id)

    def call(self, function: SandboxedFunction, payload: bytes, timeout: float) -> dict[str, Any]:
        try:
            self.child.send(json.dumps({"op": "call", "id": function.id}).encode())
            data = self.child.request(payload, timeout, self.options["max_output_bytes"] + (1 << 16))
        except ChildError as error:
            raise SandboxError(_death_words(error, self.options, "")) from None
        return _decode(data, self)

    def unload(self, function_id: int) -> None:
        if function_id in self.loaded and self.alive():
            self.loaded.discard(function_id)
            try:
                self.child.send(json.dumps({"op": "unload", "id": function_id}).encode())
            except ChildError:
                pass


def _decode(data: bytes, worker: _Worker) -> dict[str, Any]:
    try:
        reply = json.loads(data)
    except (ValueError, RecursionError):
        reply = None
    if not isinstance(reply, dict):
        worker.stop()
        raise SandboxError("the worker sent back a malformed reply")
    return reply


# One worker per set of limits, per process (a forked child starts its own: the key holds the pid).
_WORKERS: dict[tuple[int, str], _Worker] = {}
_WORKERS_LOCK = threading.Lock()
_IDS = itertools.count()


def _worker_for(options: dict[str, Any], startup_timeout: float) -> _Worker:
    key = (os.getpid(), json.dumps(options, sort_keys=True))
    with _WORKERS_LOCK:
        worker = _WORKERS.get(key)
        if worker is None or not worker.alive():
            if worker is not None:
                worker.stop()
            worker = _WORKERS[key] = _Worker(options, startup_timeout)
        return worker


class SandboxedFunction:
    """A checked LLM-written function that runs in a sandboxed worker program.

    Create it with :func:`load_function`. ``f(x)`` calls the function on one input, ``f.batch(xs)``
    on many in one round trip. Functions with the same limits share one long-lived worker per
    process (each in its own namespace); it starts on the first call (or :meth:`start`), and
    after a timeout, a memory error or a crash it is replaced by a fresh one on the next call,
    which loads the functions again as they are used. Workers are stopped at interpreter exit.
    Thread-safe (calls to one worker are serialised). Pickling it pickles the source and
    settings; the copy loads itself in the worker of the process it lands in.
    """

    def __init__(self, source: str, name: str, *, timeout: float = 2.0, memory_mb: int = 512,
                 cpu_seconds: int = 5, returns: Returns = "any",
                 max_output_bytes: int = 1 << 20, startup_timeout: float = 60.0) -> None:
        if returns not in ("any", "float", "floats"):
            raise ValueError(f"returns must be 'any', 'float' or 'floats', not {returns!r}")
        if not timeout > 0 or not startup_timeout > 0:
            raise ValueError("timeouts must be positive")
        if int(cpu_seconds) < 1 or int(memory_mb) < 1 or int(max_output_bytes) < 64:
            raise ValueError("cpu_seconds and memory_mb must be >= 1, max_output_bytes >= 64")
        check_source(source, name)
        self.source = source
        self.name = name
        self.timeout = float(timeout)
        self.startup_timeout = float(startup_timeout)
        self.returns: Returns = returns
        self._options: dict[str, Any] = {
            "memory_mb": int(memory_mb), "cpu_seconds": int(cpu_seconds), "returns": returns,
            "max_output_bytes": int(max_output_bytes),
        }
        self.id = next(_IDS)
        self._worker: _Worker | None = None
        self._load_error: SandboxError | None = None
        self._closed = False

    @property
    def memory_mb(self) -> int:
        return self._options["memory_mb"]

    @property
    def cpu_seconds(self) -> int:
        return self._options["cpu_seconds"]

    @property
    def max_output_bytes(self) -> int:
        return self._options["max_output_bytes"]

    @property
    def pid(self) -> int | None:
        """Process id of the worker this function is loaded in, or None when there is none."""
        worker = self._worker
        return worker.pid if worker is not None and worker.alive() and self.id in worker.loaded else None

    def _ready_worker(self) -> _Worker:
        """The live worker with this function loaded (the caller holds the worker's lock)."""
        if self._closed:
            raise ValueError(f"the sandboxed function {self.name!r} is closed")
        if self._load_error is not None:  # the code's own top level failed: it would again
            raise SandboxError(self._load_error.reason)
        while True:
            worker = _worker_for(self._options, self.startup_timeout)
            with worker.lock:
                if not worker.alive():  # replaced between the lookup and the lock
                    continue
                if self.id not in worker.loaded:
                    try:
                        worker.load(self, self.timeout)
                    except _LoadError as exc:
                        self._load_error = SandboxError(exc.reason)
                        raise SandboxError(exc.reason) from None
                self._worker = worker
                return worker

    def start(self) -> SandboxedFunction:
        """Start the worker now (otherwise the first call does) and wait until the code is loaded.

        Raises :class:`SandboxError` if the source's top-level code fails in the worker.
        """
        self._ready_worker()
        return self

    def __call__(self, x: Any) -> Any:
        """Call the function on one input (e.g. a state dict); see :meth:`batch`."""
        return self.batch([x])[0]

    def batch(self, inputs: Iterable[Any], *, timeout: float | None = None) -> list[Any]:
        """Call the function on each input, all in one round trip; return the results in order.

        ``timeout`` (default: the function's) is the wall-clock limit for the whole batch, and the
        CPU limit likewise applies to the whole batch. Inputs must be picklable (dicts of
        numbers/strings, lists, numpy arrays). Results are plain Python numbers, lists and dicts
        (``returns="float"``: floats; ``returns="floats"``: lists of floats).

        Raises :class:`SandboxError` if any call raises (the reason names the exception, the line
        and, for batches of several, the input index), times out, exceeds a limit or returns
        something that is not numbers.
        """
        items = list(inputs)
        if not items:
            return []
        payload = pickle.dumps(items, protocol=pickle.HIGHEST_PROTOCOL)
        wait = self.timeout if timeout is None else float(timeout)
        while True:
            worker = self._ready_worker()
            with worker.lock:
                if not worker.alive() or self.id not in worker.loaded:
                    continue  # another thread's call lost this worker meanwhile
                try:
                    reply = worker.call(self, payload, wait)
                except BaseException:  # SandboxError, or KeyboardInterrupt while waiting
                    worker.stop()  # a reply may still be on its way: this worker is spent
                    raise
                if reply.get("retire"):
                    worker.stop()
                break
        if not reply.get("ok"):
            raise SandboxError(str(reply.get("error", "the call failed"))[:1000])
        results = reply.get("results")
        if not isinstance(results, list) or len(results) != len(items):
            worker.stop()
            raise SandboxError("the worker sent back a malformed reply")
        return [_check_reply(value, self.returns) for value in results]

    def close(self) -> None:
        """Unload the function from its worker. Later calls raise ``ValueError``. Safe to call twice."""
        self._closed = True
        worker, self._worker = self._worker, None
        if worker is not None:
            with worker.lock:
                worker.unload(self.id)

    def __enter__(self) -> SandboxedFunction:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __getstate__(self) -> dict[str, Any]:
        return {"source": self.source, "name": self.name, "timeout": self.timeout,
                "startup_timeout": self.startup_timeout, **self._options}

    def __setstate__(self, state: dict[str, Any]) -> None:
        state = dict(state)
        self.__init__(state.pop("source"), state.pop("name"), **state)

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"worker pid {self.pid}" if self.pid else "idle"
        return f"<SandboxedFunction {self.name!r} ({state})>"


def load_function(source: str, name: str, *, timeout: float = 2.0, memory_mb: int = 512,
                  cpu_seconds: int = 5, returns: Returns = "any",
                  max_output_bytes: int = 1 << 20, startup_timeout: float = 60.0
                  ) -> SandboxedFunction:
    """Check ``source`` and return its top-level function ``name``, run in a sandboxed worker.

    Raises :class:`SandboxError` at once if the static check rejects the source or ``name`` is
    not a top-level ``def``. The worker process starts on the first call (or
    :meth:`SandboxedFunction.start`), which is also when errors in the source's top-level code
    (e.g. a constant computed from an undefined name) are raised; they are remembered, so later
    calls raise the same :class:`SandboxError` without starting a worker again.

    Args:
        source: Python source defining ``name`` (and optionally helpers and constants).
        name: the function to call; it takes one argument (a state dict, a list of them, an array).
        timeout: wall-clock seconds per call or per batch, enforced by the parent.
        memory_mb: address space (RLIMIT_AS) the code may add on top of the worker's own
            start-up footprint (Python + numpy); inputs and results count towards it.
        cpu_seconds: CPU seconds per call or per batch (RLIMIT_CPU, moved forward each call).
        returns: ``"any"`` (numbers, lists, dicts of numbers, nested at most 3 deep),
            ``"float"`` (one number, returned as float) or ``"floats"`` (a flat list of numbers,
            returned as a list of floats; for batched code).
        max_output_bytes: cap on one reply's results, as JSON (1 MiB).
        startup_timeout: seconds allowed for a worker's interpreter and imports to start.
    """
    return SandboxedFunction(source, name, timeout=timeout, memory_mb=memory_mb,
                             cpu_seconds=cpu_seconds, returns=returns,
                             max_output_bytes=max_output_bytes, startup_timeout=startup_timeout)
