"""The worker program (``python -I -m align_gym.llm_rewards.sandbox.worker``): quiet itself, set
the rlimits, then serve requests in frames (see :mod:`align_gym.llm_rewards.child`): ``load``
runs a function's source in a fresh restricted namespace and keeps the function under the
parent's id; ``call`` runs one function on a batch of pickled inputs. Every reply is JSON.
The first frame carries the limits."""

from __future__ import annotations

import json
import math
import os
import pickle
import signal
import sys
import warnings
from collections.abc import Callable, Mapping
from typing import IO, Any

import numpy as np

from ..child import child_streams, read_frame, write_frame
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
    """Quiet, self-contained worker (its stdio already points at /dev/null: a write to a
    captured-to-file stderr would trip RLIMIT_FSIZE): no warnings, no .pyc writes, no Ctrl-C."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # An ignored signal stays ignored across exec: a parent that ran NetHack (MiniHack) to a game's
    # end ignores SIGXCPU, which would leave RLIMIT_CPU without effect here.
    signal.signal(signal.SIGXCPU, signal.SIG_DFL)
    sys.dont_write_bytecode = True
    warnings.simplefilter("ignore")
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


def _send_json(out: IO[bytes], reply: Mapping[str, Any]) -> None:
    write_frame(out, json.dumps(reply).encode())


def _load(source: str, name: str, options: Mapping[str, Any]) -> tuple[Callable[[Any], Any] | None, dict[str, Any]]:
    """Run ``source`` in a fresh restricted namespace; the function, or None and the error reply."""
    namespace = _make_namespace()
    try:
        exec(compile(source, _CODE_FILENAME, "exec"), namespace)
        func = namespace.get(name)
        if not callable(func):
            raise TypeError(f"{name!r} is not a function after running the source")
    except BaseException as exc:  # noqa: BLE001
        reason, retire = _describe_exception(exc, options)
        del exc
        return None, {"ok": False, "retire": retire, "error": f"top-level code {reason}"}
    return func, {"ok": True, "stage": "loaded"}


def main() -> None:
    """Boot, set the limits, then serve ``load`` and ``call`` requests until end of input."""
    frames_in, out = child_streams()
    first = read_frame(frames_in)
    if first is None:
        return
    options = json.loads(first)
    try:
        _prepare_worker_process()
        resource = _apply_limits(options["memory_mb"])
        sys.setrecursionlimit(RECURSION_LIMIT)
    except BaseException as exc:  # noqa: BLE001
        _send_json(out, {"ok": False, "error": f"the worker failed to start: {exc!r}"})
        return
    _send_json(out, {"ok": True, "stage": "booted"})

    functions: dict[int, Callable[[Any], Any]] = {}
    returns, max_bytes = options["returns"], options["max_output_bytes"]
    while True:
        header = read_frame(frames_in)
        if header is None:  # the parent closed the pipe or went away
            return
        request = json.loads(header)
        if request["op"] == "load":
            _set_cpu_budget(resource, options["cpu_seconds"])
            func, reply = _load(request["source"], request["name"], options)
            if func is not None:
                functions[request["id"]] = func
            _send_json(out, reply)
            if reply.get("retire"):
                return
            continue
        if request["op"] == "unload":
            functions.pop(request["id"], None)
            continue
        data = read_frame(frames_in)  # op "call": the pickled inputs follow
        if data is None:
            return
        try:
            inputs = pickle.loads(data)
        except MemoryError:
            del data
            _send_json(out, {"ok": False, "retire": True, "error": "the inputs exceed the memory "
                             f"limit ({options['memory_mb']} MiB)"})
            return
        del data
        func = functions.get(request["id"])
        if func is None:
            _send_json(out, {"ok": False, "error": "the function is not loaded in this worker"})
            continue
        _set_cpu_budget(resource, options["cpu_seconds"])
        reply, retire = _run_batch(func, inputs, returns, max_bytes, options)
        del inputs
        write_frame(out, reply)
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


if __name__ == "__main__":
    main()
