"""The parent side: :class:`_Worker` (one worker process and its pipe), the registry of live
workers stopped at interpreter exit, :class:`SandboxedFunction` and :func:`load_function`."""

from __future__ import annotations

import atexit
import json
import multiprocessing
import multiprocessing.connection
import multiprocessing.util  # noqa: F401  (its atexit hook must be registered before ours)
import os
import pickle
import signal
import threading
import weakref
from collections.abc import Iterable, Mapping
from typing import Any, Literal

from .errors import SandboxError
from .results import _check_reply, _format_bytes
from .static_check import check_source
from .worker import _worker_main

Returns = Literal["any", "float", "floats"]

_LIVE_WORKERS: weakref.WeakSet[_Worker] = weakref.WeakSet()


def _stop_process(process: multiprocessing.process.BaseProcess,
                  conn: multiprocessing.connection.Connection, owner_pid: int,
                  graceful: bool) -> None:
    """Close the pipe and make sure the worker is gone (killed if it does not leave at once)."""
    if os.getpid() != owner_pid:  # a forked copy of the owner: the worker is not ours to stop
        return
    try:
        conn.close()
    except OSError:
        pass
    try:
        if graceful:
            process.join(0.5)  # the worker leaves on EOF
        if process.exitcode is None:
            process.kill()
            process.join(2.0)
        process.close()
    except (ValueError, AssertionError, OSError):  # already closed, or not a child of ours
        pass


def _signal_words(exitcode: int | None, options: Mapping[str, Any]) -> str:
    if exitcode is None:
        return "worker stopped answering"
    if exitcode >= 0:
        return f"worker exited unexpectedly (exit code {exitcode})"
    number = -exitcode
    try:
        signame = signal.Signals(number).name
    except ValueError:
        signame = "unknown signal"
    if signame == "SIGXCPU":
        return f"exceeded the CPU time limit ({options['cpu_seconds']} s)"
    if signame == "SIGXFSZ":
        return f"worker crashed (signal {number}: SIGXFSZ, it tried to write a file)"
    if signame == "SIGKILL":
        return f"worker crashed (signal {number}: SIGKILL, possibly killed for memory use)"
    return f"worker crashed (signal {number}: {signame})"


class _LoadError(SandboxError):
    """The source's top-level code failed in the worker: it would fail the same way again."""


class _Worker:
    """One worker process and its pipe; owned by one :class:`SandboxedFunction`."""

    def __init__(self, source: str, name: str, options: dict[str, Any],
                 startup_timeout: float, load_timeout: float) -> None:
        ctx = multiprocessing.get_context("spawn")
        if multiprocessing.current_process().daemon:
            raise RuntimeError(
                "a sandbox worker cannot be started from a daemonic process (for example a "
                "SubprocVecEnv or AsyncVectorEnv env worker); call the sandboxed function from "
                "the main process, e.g. in a vector-level wrapper with .batch()")
        self.options = options
        self.stopped = False
        self.owner_pid = os.getpid()
        self.conn, child_conn = ctx.Pipe(duplex=True)
        self.process = ctx.Process(target=_worker_main, args=(child_conn, source, name, options),
                                   name="align-gym-sandbox", daemon=False)
        self.process.start()
        child_conn.close()
        self._finalizer = weakref.finalize(self, _stop_process, self.process, self.conn,
                                           self.owner_pid, True)
        _LIVE_WORKERS.add(self)
        self.pid = self.process.pid
        try:
            self.expect_stage("booted", startup_timeout, "while starting")
            try:
                self.expect_stage("loaded", load_timeout, "while loading")
            except SandboxError as exc:
                raise _LoadError(exc.reason) from None
        except BaseException:
            self.stop(graceful=False)
            raise

    def expect_stage(self, stage: str, timeout: float, when: str) -> None:
        reply = self.receive(timeout, 1 << 16, when)
        if not reply.get("ok"):
            raise SandboxError(str(reply.get("error", "the worker failed"))[:1000])
        if reply.get("stage") != stage:
            raise SandboxError("the worker sent back a malformed reply")

    def alive(self) -> bool:
        return not self.stopped and os.getpid() == self.owner_pid and self.process.is_alive()

    def stop(self, graceful: bool = True) -> None:
        if self.stopped:
            return
        self.stopped = True
        _LIVE_WORKERS.discard(self)
        if graceful:
            self._finalizer()
        else:
            self._finalizer.detach()
            _stop_process(self.process, self.conn, self.owner_pid, False)

    def death_reason(self, when: str = "") -> str:
        self.process.join(1.0)
        words = _signal_words(self.process.exitcode, self.options)
        self.stop(graceful=False)
        return f"{words} {when}".strip()

    def receive(self, timeout: float, max_bytes: int, when: str = "") -> dict[str, Any]:
        """Wait up to ``timeout`` s for one reply; on a timeout, crash or bad reply the worker is
        stopped and :class:`SandboxError` raised."""
        if not self.conn.poll(timeout):
            self.stop(graceful=False)
            raise SandboxError(f"timed out after {round(timeout, 3)} s {when}".strip())
        try:
            data = self.conn.recv_bytes(max_bytes)
        except EOFError:
            raise SandboxError(self.death_reason(when)) from None
        except OSError:  # longer than max_bytes: a worker that ignored the output cap
            self.stop(graceful=False)
            raise SandboxError(f"output too large: the reply exceeds {_format_bytes(max_bytes)}") \
                from None
        try:
            reply = json.loads(data)
        except (ValueError, RecursionError):
            reply = None
        if not isinstance(reply, dict):
            self.stop(graceful=False)
            raise SandboxError("the worker sent back a malformed reply")
        return reply

    def request(self, payload: bytes, timeout: float, max_bytes: int) -> dict[str, Any]:
        try:
            self.conn.send_bytes(payload)
        except OSError:  # BrokenPipeError: it died while idle
            raise SandboxError(self.death_reason()) from None
        return self.receive(timeout, max_bytes)


def _shutdown_all_workers() -> None:
    """At interpreter exit: stop every worker this process started. Registered after
    multiprocessing's own exit hook, so it runs first (atexit is last-in, first-out) and that
    hook does not wait on workers that are blocked reading their pipe."""
    for worker in list(_LIVE_WORKERS):
        worker.stop(graceful=False)


atexit.register(_shutdown_all_workers)


class SandboxedFunction:
    """A checked LLM-written function that runs in its own sandboxed worker process.

    Create it with :func:`load_function`. ``f(x)`` calls the function on one input, ``f.batch(xs)``
    on many in one round trip. The worker starts on the first call (or :meth:`start`) and is kept
    for later calls; after a timeout, a memory error or a crash it is replaced by a fresh one on
    the next call. Use it as a context manager or call :meth:`close`; remaining workers are
    stopped when the object is garbage-collected and at interpreter exit. Thread-safe (calls are
    serialised). Pickling it pickles the source and settings; the copy starts its own worker.
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
        self._worker: _Worker | None = None
        self._load_error: SandboxError | None = None
        self._lock = threading.Lock()
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
        """Process id of the current worker, or None when none is running."""
        worker = self._worker
        return worker.pid if worker is not None and worker.alive() else None

    def _ensure_worker(self) -> _Worker:
        if self._closed:
            raise ValueError(f"the sandboxed function {self.name!r} is closed")
        if self._load_error is not None:  # the code's own top level failed: it would again
            raise SandboxError(self._load_error.reason)
        worker = self._worker
        if worker is not None and worker.alive():
            return worker
        if worker is not None:
            worker.stop(graceful=False)
            self._worker = None
        try:
            worker = _Worker(self.source, self.name, self._options, self.startup_timeout,
                             self.timeout)
        except _LoadError as exc:
            self._load_error = SandboxError(exc.reason)
            raise SandboxError(exc.reason) from None
        self._worker = worker
        return worker

    def start(self) -> SandboxedFunction:
        """Start the worker now (otherwise the first call does) and wait until the code is loaded.

        Raises :class:`SandboxError` if the source's top-level code fails in the worker.
        """
        with self._lock:
            self._ensure_worker()
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
        with self._lock:
            worker = self._ensure_worker()
            try:
                reply = worker.request(payload, wait, self.max_output_bytes + (1 << 16))
            except BaseException:  # SandboxError, or KeyboardInterrupt while waiting
                worker.stop(graceful=False)  # a reply may still be on its way: this one is spent
                raise
            if reply.get("retire"):
                worker.stop()
            if not reply.get("ok"):
                raise SandboxError(str(reply.get("error", "the call failed"))[:1000])
            results = reply.get("results")
            if not isinstance(results, list) or len(results) != len(items):
                worker.stop(graceful=False)
                raise SandboxError("the worker sent back a malformed reply")
        return [_check_reply(value, self.returns) for value in results]

    def close(self) -> None:
        """Stop the worker. Later calls raise ``ValueError``. Safe to call twice."""
        with self._lock:
            self._closed = True
            if self._worker is not None:
                self._worker.stop()
                self._worker = None

    def __enter__(self) -> SandboxedFunction:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __reduce__(self) -> tuple[Any, ...]:
        kwargs = {"timeout": self.timeout, "startup_timeout": self.startup_timeout,
                  **self._options}
        return (_rebuild, (self.source, self.name, kwargs))

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"worker pid {self.pid}" if self.pid else "idle"
        return f"<SandboxedFunction {self.name!r} ({state})>"


def _rebuild(source: str, name: str, kwargs: dict[str, Any]) -> SandboxedFunction:
    return SandboxedFunction(source, name, **kwargs)


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
