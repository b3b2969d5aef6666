"""The worker process: quiet itself, set the rlimits, load the user code into its restricted
namespace and serve batches of calls over the pipe, replying in JSON. :func:`_worker_main` is the
spawn target (imported by its module path in the child)."""

from __future__ import annotations

import json
import math
import multiprocessing.connection
import os
import pickle
import signal
import sys
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from .namespace import _make_namespace
from .results import _format_bytes, _OutputError, _plain
from .static_check import _CODE_FILENAME

#: Recursion limit set in the worker (Python frames, the worker's own included).
RECURSION_LIMIT = 300


def _vm_size_bytes() -> int:
    """This process's current address-space size (Linux), or 0 where it cannot be read."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmSize:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _set_limit(resource: Any, which: str, soft: int, hard: int | None = None) -> None:
    """Lower one rlimit, never above the current hard limit; skip limits this OS lacks."""
    kind = getattr(resource, which, None)
    if kind is None:
        return
    current_soft, current_hard = resource.getrlimit(kind)
    if hard is None:
        hard = soft
    if current_hard != resource.RLIM_INFINITY:
        soft, hard = min(soft, current_hard), min(hard, current_hard)
    try:
        resource.setrlimit(kind, (soft, hard))
    except (ValueError, OSError):  # e.g. a limit this kernel refuses; the others still apply
        pass


def _set_cpu_budget(resource: Any, cpu_seconds: int) -> None:
    """Allow ``cpu_seconds`` more CPU seconds from now (RLIMIT_CPU counts the process's life)."""
    if resource is None:
        return
    usage = resource.getrusage(resource.RUSAGE_SELF)
    used = math.ceil(usage.ru_utime + usage.ru_stime)
    _, hard = resource.getrlimit(resource.RLIMIT_CPU)
    soft = used + cpu_seconds
    if hard != resource.RLIM_INFINITY:
        soft = min(soft, hard)
    resource.setrlimit(resource.RLIMIT_CPU, (soft, hard))


def _prepare_worker_process() -> None:
    """Quiet, self-contained worker: no stdio (a write to a captured-to-file stderr would
    trip RLIMIT_FSIZE), no warnings, no .pyc writes, no Ctrl-C tracebacks."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sys.dont_write_bytecode = True
    warnings.simplefilter("ignore")
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    os.close(devnull)
    # Load numpy's lazily imported pieces and BLAS buffers now, before the limits.
    a = np.arange(1.0, 10.0).reshape(3, 3) + np.eye(3)
    np.linalg.norm(a), np.linalg.det(a), np.linalg.inv(a), np.linalg.svd(a), a @ a
    np.median(a), np.percentile(a, 50), np.unique(a), np.histogram(a), np.round(a, 2), str(a)
    a.sum(), a.mean(), a.std(), a.max(), a.min(), a.clip(0, 1), np.clip(a, 0, 1), repr(a[0, 0])
    a.tolist(), a.astype(int), a > 1, float(a[0, 0]), np.where(a > 1, a, 0), a.any(), a.all()


def _apply_limits(memory_mb: int) -> Any:
    """Set the rlimits; return the ``resource`` module (None where it does not exist)."""
    try:
        import resource
    except ImportError:  # not POSIX: only the parent's timeout applies
        return None
    _set_limit(resource, "RLIMIT_CORE", 0)
    _set_limit(resource, "RLIMIT_FSIZE", 0)
    _set_limit(resource, "RLIMIT_NPROC", 0)
    highest_fd = max((int(fd) for fd in os.listdir("/proc/self/fd")), default=2) \
        if os.path.isdir("/proc/self/fd") else 8
    _set_limit(resource, "RLIMIT_NOFILE", max(16, highest_fd + 8))
    _set_limit(resource, "RLIMIT_AS", _vm_size_bytes() + memory_mb * (1 << 20))
    return resource


def _describe_exception(exc: BaseException, options: Mapping[str, Any]) -> tuple[str, bool]:
    """Plain-words reason for an exception raised by user code, and whether to retire the
    worker afterwards (after a MemoryError the process is not trusted to be in good shape)."""
    line = None
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == _CODE_FILENAME:
            line = tb.tb_lineno
        tb = tb.tb_next
    where = f" at line {line}" if line is not None else ""
    if isinstance(exc, MemoryError):
        return f"exceeded the memory limit ({options['memory_mb']} MiB){where}", True
    if isinstance(exc, RecursionError):
        return f"exceeded the recursion limit ({RECURSION_LIMIT} frames){where}", False
    try:
        message = str(exc)
    except BaseException:  # noqa: BLE001  (a message that cannot even be formatted)
        message = "<unprintable message>"
    if len(message) > 300:
        message = message[:300] + "..."
    message = f": {message}" if message else ""
    return f"raised {type(exc).__name__}{message}{where}", False


def _send_json(conn: multiprocessing.connection.Connection, reply: Mapping[str, Any]) -> None:
    conn.send_bytes(json.dumps(reply).encode())


def _worker_main(conn: multiprocessing.connection.Connection, source: str, name: str,
                 options: dict[str, Any]) -> None:
    """Entry point of the worker process: boot, set limits, load the code, serve batches."""
    try:
        _prepare_worker_process()
        namespace = _make_namespace()
        resource = _apply_limits(options["memory_mb"])
        sys.setrecursionlimit(RECURSION_LIMIT)
    except BaseException as exc:  # noqa: BLE001
        _send_json(conn, {"ok": False, "error": f"the worker failed to start: {exc!r}"})
        return
    _send_json(conn, {"ok": True, "stage": "booted"})

    _set_cpu_budget(resource, options["cpu_seconds"])
    try:
        exec(compile(source, _CODE_FILENAME, "exec"), namespace)
        func = namespace.get(name)
        if not callable(func):
            raise TypeError(f"{name!r} is not a function after running the source")
    except BaseException as exc:  # noqa: BLE001
        reason, _ = _describe_exception(exc, options)
        del exc
        _send_json(conn, {"ok": False, "error": f"top-level code {reason}"})
        return
    _send_json(conn, {"ok": True, "stage": "loaded"})

    returns, max_bytes = options["returns"], options["max_output_bytes"]
    while True:
        try:
            data = conn.recv_bytes()
        except (EOFError, OSError):  # the parent closed the pipe or went away
            return
        try:
            inputs = pickle.loads(data)
        except MemoryError:
            del data
            _send_json(conn, {"ok": False, "retire": True, "error": "the inputs exceed the memory "
                              f"limit ({options['memory_mb']} MiB)"})
            return
        del data
        _set_cpu_budget(resource, options["cpu_seconds"])
        reply, retire = _run_batch(func, inputs, returns, max_bytes, options)
        del inputs
        conn.send_bytes(reply)
        if retire:
            return


def _run_batch(func: Callable[[Any], Any], inputs: list[Any], returns: str, max_bytes: int,
               options: Mapping[str, Any]) -> tuple[bytes, bool]:
    """Call ``func`` on every input; return the JSON reply (results, or the first error) and
    whether the worker should retire after sending it."""
    budget = [max(1, max_bytes // 2), max_bytes]  # a value takes at least two bytes ("0,")
    results: list[Any] = []
    append = results.append
    error = None
    retire = False
    try:
        for item in inputs:
            append(_plain(func(item), returns, budget))
    except _OutputError as exc:
        error = str(exc)
    except BaseException as exc:  # noqa: BLE001  (SystemExit and all: contain everything)
        error, retire = _describe_exception(exc, options)
    if error is not None and len(inputs) > 1:
        error += f" (input {len(results)} of {len(inputs)})"
    if error is None:
        try:
            reply = json.dumps({"ok": True, "results": results}).encode()
        except MemoryError:
            error, retire = f"exceeded the memory limit ({options['memory_mb']} MiB)", True
        else:
            if len(reply) <= max_bytes + 64:
                return reply, False
            error = (f"output too large: {len(reply)} bytes of results exceed the "
                     f"{_format_bytes(max_bytes)} limit per call")
    del results
    return json.dumps({"ok": False, "retire": retire, "error": error}).encode(), retire
