"""Run Python functions written by a language model (rewards, potentials) out of harm's way.

An LLM writes something like::

    def potential(state):
        return -abs(state["x"] - state["goal_x"])

and we want to call it on every env step without letting a mistake (or a prompt-injected trick)
read or write files, open sockets, start processes, hang the trainer or eat its memory.
:func:`load_function` checks the source, then runs it in a separate worker process:

>>> from align_gym.llm_rewards.sandbox import SandboxError, load_function
>>> source = '''
... def potential(state):
...     return -abs(state["x"] - state["goal_x"])
... '''
>>> with load_function(source, "potential", returns="float") as potential:
...     potential({"x": 1.0, "goal_x": 4.0})
...     potential.batch([{"x": 0, "goal_x": 0}, {"x": 2, "goal_x": 5}])  # one round trip
-3.0
[0.0, -3.0]
>>> try:
...     load_function("import os\\ndef f(s):\\n    return 0", "f")
... except SandboxError as err:
...     print(err.reason)
line 1: importing 'os' is not allowed (only math and numpy are provided)

What it guards against, in two layers:

1. **Static check** (:func:`check_source`, at load time, in this process). The source is parsed
   with :mod:`ast` and every node must be of an allowed type (functions, ``if``/``for``/``while``,
   ``try``/``except``/``finally``, ``raise``, ``assert``, ``lambda``, comprehensions, arithmetic,
   calls, subscripts, f-strings). Rejected: imports other than ``math``/``numpy``; names or
   attributes starting with ``__`` and attributes starting with ``_``; the builtins that reach the
   interpreter (``open``, ``exec``, ``eval``, ``compile``, ``getattr``, ``globals``, ``vars``,
   ``type``, ``object``, ``super``, ``exit``, ``SystemExit``, ...); attributes that reach frames,
   code objects or files (``gi_frame``, ``f_globals``, ``tb_frame``, ``mro``, ``tofile``,
   ``ctypes``, ...) and ``.format``/``.format_map`` (format strings can read attributes:
   ``"{0.__class__}".format(x)``); ``numpy``/``math`` attributes off the allow-lists; ``class``,
   ``with``, ``global``/``nonlocal``, ``yield``, ``async``, ``match``, ``except*``; assigning or
   deleting attributes. Every violation is reported in plain words with its line.
   ``try``/``except`` is allowed on purpose: LLM code uses it for missing keys, and it cannot
   catch what stops runaway code (the parent's kill on timeout, the kernel's signals for CPU
   time), while the exception objects it yields lead nowhere without dunder attributes.
2. **Worker process** (its own program, ``python -I -m align_gym.llm_rewards.sandbox.worker``,
   started with :mod:`subprocess`; one long-lived worker per set of limits in each process, serving
   every function with those limits, each in its own namespace). The code runs with a restricted ``__builtins__`` (:data:`ALLOWED_BUILTINS`) and with
   ``math`` and ``numpy`` replaced by read-only proxies that expose numerical functions only
   (:data:`MATH_ALLOWED`, :data:`NUMPY_ALLOWED`): no ``np.load``/``save``/``fromfile``/``memmap``/
   ``ctypeslib``/``lib``/``frombuffer``/``random``..., and ``np.ndarray`` is a stand-in good for
   ``isinstance`` only (the real constructor can turn raw bytes into object pointers). ``import``
   gives only those proxies. Inside the worker, rlimits cap CPU time per call (``RLIMIT_CPU``),
   memory (``RLIMIT_AS``), file writes (``RLIMIT_FSIZE`` = 0), new processes (``RLIMIT_NPROC`` =
   0), open files (``RLIMIT_NOFILE``) and core dumps, and the recursion limit is lowered; its
   stdin/stdout/stderr are ``/dev/null``. The parent enforces a wall-clock timeout per call,
   refuses results that are not numbers or are larger than ``max_output_bytes``, and reads
   replies as JSON, never pickle, so even a subverted worker cannot make the parent run code. A
   worker that times out, runs out of memory or crashes is killed, and the next call gets a fresh
   one.

What it does NOT guard against: this is defence in depth against mistakes and ordinary tricks,
**not a security boundary against a determined attacker**. There is no seccomp filter, no
namespace, chroot or container and no privilege drop: code that got past both layers (through an
unknown hole in CPython or numpy, or a kernel exploit) could read any file the trainer can read,
create empty files, open network connections and see the worker's memory. ``RLIMIT_NPROC`` is not
enforced by the kernel for root (or ``CAP_SYS_RESOURCE``), so process creation is then blocked by
the static check alone. CPU and memory are limited per call, not the host's overall load: many
functions loaded at once mean as many worker processes. Code that only wastes time is stopped by
the timeout, not prevented. Run untrusted code as an unprivileged user in a container if it matters.

Practical notes: a worker starts in a few tenths of a second; a round trip costs tens of
microseconds, so batch per vector step where you can. Module-level state (a global list the code
appends to) lives as long as the worker, so keep potentials pure. The limits need POSIX
``resource`` (Linux; where a limit is missing it is skipped, the timeout still applies). The
worker is a program of its own, not a :mod:`multiprocessing` child, so it works from a script
without a main guard (nothing of the script runs again), from daemonic processes (SB3
``SubprocVecEnv`` and gymnasium ``AsyncVectorEnv`` workers), from Ray tasks and after ``fork`` (a
forked process starts a worker of its own), and costs a fresh interpreter with numpy, whatever
the caller has imported.
"""

from __future__ import annotations

from .errors import SandboxError
from .function import Returns, SandboxedFunction, load_function
from .static_check import (
    ALLOWED_BUILTINS,
    ALLOWED_MODULES,
    MATH_ALLOWED,
    NUMPY_ALLOWED,
    NUMPY_LINALG_ALLOWED,
    check_source,
)
from .worker import RECURSION_LIMIT

__all__ = [
    "ALLOWED_BUILTINS",
    "ALLOWED_MODULES",
    "MATH_ALLOWED",
    "NUMPY_ALLOWED",
    "NUMPY_LINALG_ALLOWED",
    "RECURSION_LIMIT",
    "Returns",
    "SandboxError",
    "SandboxedFunction",
    "check_source",
    "load_function",
]
