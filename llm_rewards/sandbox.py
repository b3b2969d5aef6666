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
2. **Worker process** (``multiprocessing`` *spawn* context, one per function, reused across
   calls). The code runs with a restricted ``__builtins__`` (:data:`ALLOWED_BUILTINS`) and with
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
``resource`` (Linux; where a limit is missing it is skipped, the timeout still applies). Workers
are started with the *spawn* method, which re-imports the parent's ``__main__`` module in each
worker: keep a script's work under ``if __name__ == "__main__":``. A daemonic process (e.g. a
``SubprocVecEnv`` or ``AsyncVectorEnv`` env worker) cannot start processes, so call sandboxed
functions from the main process, for example in a vector-level wrapper with
:meth:`SandboxedFunction.batch`.
"""

from __future__ import annotations

import ast
import atexit
import json
import math
import multiprocessing
import multiprocessing.connection
import multiprocessing.util  # noqa: F401  (its atexit hook must be registered before ours)
import os
import pickle
import signal
import sys
import threading
import warnings
import weakref
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Literal

import numpy as np

__all__ = [
    "ALLOWED_BUILTINS",
    "ALLOWED_MODULES",
    "MATH_ALLOWED",
    "NUMPY_ALLOWED",
    "NUMPY_LINALG_ALLOWED",
    "SandboxError",
    "SandboxedFunction",
    "check_source",
    "load_function",
]

Returns = Literal["any", "float", "floats"]

# --------------------------------------------------------------------------------------------
# Allow-lists
# --------------------------------------------------------------------------------------------

#: Exception classes user code may raise or catch (``try``/``except`` is allowed: it cannot catch
#: a timeout or a CPU/memory kill, which happen outside the user code's reach).
_EXCEPTIONS: dict[str, type[BaseException]] = {
    exc.__name__: exc
    for exc in (Exception, ArithmeticError, AssertionError, IndexError, KeyError, LookupError,
                OverflowError, TypeError, ValueError, ZeroDivisionError)
}

_BUILTIN_FUNCTIONS: dict[str, Any] = {
    "abs": abs, "all": all, "any": any, "bool": bool, "dict": dict, "divmod": divmod,
    "enumerate": enumerate, "filter": filter, "float": float, "int": int, "isinstance": isinstance,
    "len": len, "list": list, "map": map, "max": max, "min": min, "pow": pow, "range": range,
    "reversed": reversed, "round": round, "set": set, "sorted": sorted, "str": str, "sum": sum,
    "tuple": tuple, "zip": zip,
}

#: Names user code finds in its builtins (plus ``print``, which discards its arguments, and the
#: modules ``math``, ``np`` and ``numpy``, which are predefined globals).
ALLOWED_BUILTINS: frozenset[str] = frozenset({*_BUILTIN_FUNCTIONS, *_EXCEPTIONS, "print"})

#: Module names ``import`` may name; all three are the read-only proxies.
ALLOWED_MODULES: frozenset[str] = frozenset({"math", "numpy", "numpy.linalg"})

#: ``math`` attributes exposed (those missing from this Python version are left out).
MATH_ALLOWED: frozenset[str] = frozenset(
    name for name in (
        "acos", "acosh", "asin", "asinh", "atan", "atan2", "atanh", "cbrt", "ceil", "comb",
        "copysign", "cos", "cosh", "degrees", "dist", "e", "erf", "erfc", "exp", "exp2", "expm1",
        "fabs", "factorial", "floor", "fmod", "frexp", "fsum", "gamma", "gcd", "hypot", "inf",
        "isclose", "isfinite", "isinf", "isnan", "isqrt", "lcm", "ldexp", "lgamma", "log", "log10",
        "log1p", "log2", "modf", "nan", "nextafter", "perm", "pi", "pow", "prod", "radians",
        "remainder", "sin", "sinh", "sqrt", "tan", "tanh", "tau", "trunc", "ulp",
    ) if hasattr(math, name)
)

#: ``numpy`` attributes exposed: array creation from Python values, shape manipulation, math
#: ufuncs, reductions, comparisons, sorting/searching, a few dtypes and ``linalg`` (itself a proxy).
#: Nothing that touches files, raw memory, C types, global state or randomness.
NUMPY_ALLOWED: frozenset[str] = frozenset(
    name for name in (
        # creation from Python values and shapes
        "array", "asarray", "zeros", "ones", "full", "empty", "zeros_like", "ones_like",
        "full_like", "empty_like", "arange", "linspace", "logspace", "eye", "identity", "diag",
        "meshgrid", "tri", "triu", "tril",
        # shape manipulation
        "reshape", "ravel", "transpose", "swapaxes", "moveaxis", "squeeze", "expand_dims",
        "atleast_1d", "atleast_2d", "atleast_3d", "stack", "vstack", "hstack", "dstack",
        "column_stack", "concatenate", "split", "array_split", "flip", "fliplr", "flipud", "roll",
        "rot90", "tile", "repeat", "broadcast_to", "pad", "append", "delete", "insert", "copy",
        "shape", "ndim", "size", "take", "put_along_axis", "take_along_axis",
        # elementwise math
        "abs", "absolute", "fabs", "add", "subtract", "multiply", "divide", "true_divide",
        "floor_divide", "power", "float_power", "mod", "remainder", "fmod", "divmod", "negative",
        "positive", "reciprocal", "sqrt", "cbrt", "square", "exp", "exp2", "expm1", "log", "log2",
        "log10", "log1p", "logaddexp", "logaddexp2", "sin", "cos", "tan", "arcsin", "arccos",
        "arctan", "arctan2", "sinh", "cosh", "tanh", "arcsinh", "arccosh", "arctanh", "hypot",
        "deg2rad", "rad2deg", "degrees", "radians", "floor", "ceil", "trunc", "rint", "fix",
        "round", "around", "sign", "signbit", "copysign", "heaviside", "maximum", "minimum", "fmax",
        "fmin", "clip", "where", "select", "piecewise", "nan_to_num", "interp", "sinc", "gcd",
        "lcm",
        # comparisons and logic
        "isnan", "isinf", "isfinite", "isclose", "allclose", "array_equal", "equal", "not_equal",
        "less", "less_equal", "greater", "greater_equal", "logical_and", "logical_or",
        "logical_not", "logical_xor",
        # reductions and statistics
        "sum", "prod", "cumsum", "cumprod", "mean", "average", "median", "std", "var", "min",
        "max", "amin", "amax", "ptp", "argmin", "argmax", "all", "any", "count_nonzero",
        "percentile", "quantile", "nansum", "nanmean", "nanmin", "nanmax", "nanstd", "nanvar",
        "nanmedian", "diff", "ediff1d", "gradient", "trapezoid", "histogram", "bincount",
        "digitize", "corrcoef", "cov", "convolve",
        # linear algebra
        "dot", "vdot", "matmul", "inner", "outer", "cross", "tensordot", "einsum", "trace",
        "linalg",
        # sorting and searching
        "sort", "argsort", "unique", "searchsorted", "nonzero", "flatnonzero", "argwhere", "isin",
        "intersect1d", "union1d", "setdiff1d",
        # constants and dtypes
        "pi", "e", "inf", "nan", "newaxis", "euler_gamma", "float16", "float32", "float64",
        "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "bool_",
        "integer", "floating", "number",
        "ndarray",  # a stand-in good for isinstance() only, see _NdarrayStandIn
    ) if hasattr(np, name)
)

#: ``numpy.linalg`` attributes exposed.
NUMPY_LINALG_ALLOWED: frozenset[str] = frozenset(
    name for name in ("norm", "det", "inv", "pinv", "solve", "lstsq", "eig", "eigh", "eigvals",
                      "eigvalsh", "svd", "qr", "cholesky", "matrix_rank", "matrix_power", "slogdet",
                      "cond", "multi_dot", "LinAlgError")
    if hasattr(np.linalg, name)
)

#: Names rejected wherever they appear (they are not in the builtins either; rejecting them
#: statically gives a clear message instead of a NameError at call time).
_FORBIDDEN_NAMES: dict[str, str] = {
    **dict.fromkeys(("exec", "eval", "compile", "breakpoint"), "it runs arbitrary code"),
    **dict.fromkeys(("getattr", "setattr", "delattr", "hasattr", "globals", "locals", "vars",
                     "dir", "type", "object", "super", "classmethod", "staticmethod", "property"),
                    "introspection can reach the interpreter's internals"),
    **dict.fromkeys(("open", "input", "help", "memoryview", "bytearray"),
                    "input/output is not available"),
    **dict.fromkeys(("exit", "quit", "SystemExit", "KeyboardInterrupt", "BaseException",
                     "GeneratorExit"), "it would stop the worker"),
    "format": "format strings can read attributes",
}

#: Attribute names rejected on any object (on top of every name starting with ``_``).
_FORBIDDEN_ATTRIBUTES: dict[str, str] = {
    "format": "format strings can read attributes (use f-strings or % formatting)",
    "format_map": "format strings can read attributes (use f-strings or % formatting)",
    "mro": "it reaches the class hierarchy",
    "tofile": "it writes a file",
    "dump": "it writes a file",
    "dumps": "it exposes raw pickled memory",
    "ctypes": "it exposes raw memory",
}

#: Attribute prefixes of frames, code objects, generators, coroutines and tracebacks.
_FORBIDDEN_ATTRIBUTE_PREFIXES: tuple[str, ...] = ("f_", "co_", "gi_", "cr_", "ag_", "tb_", "func_")

_NUMPY_FILE_HINTS: dict[str, str] = dict.fromkeys(
    ("load", "save", "savez", "savez_compressed", "savetxt", "loadtxt", "genfromtxt", "fromfile",
     "memmap", "DataSource", "fromregex", "tofile"), "file access")
_NUMPY_FILE_HINTS.update(dict.fromkeys(
    ("ctypeslib", "frombuffer", "lib", "f2py", "distutils", "testing", "core", "_core", "char",
     "rec", "ma", "random", "show_config", "seterr", "set_printoptions", "vectorize",
     "frompyfunc"), "not a numerical function"))

_ONLY_MATH_NUMPY = "(only math and numpy are provided)"
_MAX_SOURCE_CHARS = 100_000
_CODE_FILENAME = "<llm-code>"
#: Recursion limit set in the worker (Python frames, the worker's own included).
RECURSION_LIMIT = 300

# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# Static check
# --------------------------------------------------------------------------------------------

_ALLOWED_NODES: frozenset[type] = frozenset({
    # module and statements
    ast.Module, ast.FunctionDef, ast.Return, ast.Delete, ast.Assign, ast.AugAssign, ast.AnnAssign,
    ast.For, ast.While, ast.If, ast.Raise, ast.Try, ast.ExceptHandler, ast.Assert, ast.Import,
    ast.ImportFrom, ast.alias, ast.Expr, ast.Pass, ast.Break, ast.Continue,
    # expressions
    ast.BoolOp, ast.NamedExpr, ast.BinOp, ast.UnaryOp, ast.Lambda, ast.IfExp, ast.Dict, ast.Set,
    ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp, ast.comprehension, ast.Compare,
    ast.Call, ast.keyword, ast.FormattedValue, ast.JoinedStr, ast.Constant, ast.Attribute,
    ast.Subscript, ast.Starred, ast.Name, ast.List, ast.Tuple, ast.Slice,
    ast.arguments, ast.arg,
    # contexts and operators
    ast.Load, ast.Store, ast.Del, ast.And, ast.Or,
    ast.Add, ast.Sub, ast.Mult, ast.MatMult, ast.Div, ast.Mod, ast.Pow, ast.LShift, ast.RShift,
    ast.BitOr, ast.BitXor, ast.BitAnd, ast.FloorDiv, ast.Invert, ast.Not, ast.UAdd, ast.USub,
    ast.Eq, ast.NotEq, ast.Lt, ast.LtE, ast.Gt, ast.GtE, ast.Is, ast.IsNot, ast.In, ast.NotIn,
})

_NODE_WORDS: dict[str, str] = {
    "ClassDef": "class definitions are not allowed",
    "AsyncFunctionDef": "async functions are not allowed",
    "Await": "'await' is not allowed",
    "AsyncFor": "'async for' is not allowed",
    "AsyncWith": "'async with' is not allowed",
    "With": "'with' statements are not allowed",
    "Global": "'global' statements are not allowed",
    "Nonlocal": "'nonlocal' statements are not allowed",
    "Yield": "generator functions ('yield') are not allowed",
    "YieldFrom": "generator functions ('yield from') are not allowed",
    "Match": "'match' statements are not allowed",
    "TryStar": "'except*' is not allowed",
}


class _Checker:
    """Walks the tree iteratively (no recursion limit to trip on) and collects violations."""

    def __init__(self) -> None:
        self.violations: list[tuple[int, str]] = []
        self.numpy_names = {"np", "numpy"}
        self.linalg_names: set[str] = set()
        self.math_names = {"math"}

    def flag(self, line: int, message: str) -> None:
        self.violations.append((line, f"line {line}: {message}"))

    def run(self, tree: ast.Module) -> None:
        for node in ast.walk(tree):  # first learn the names math and numpy are imported as
            if isinstance(node, ast.Import):
                for alias in node.names:
                    self.bind_module(alias.name, alias.asname)
            elif isinstance(node, ast.ImportFrom) and node.module == "numpy" and not node.level:
                for alias in node.names:
                    if alias.name == "linalg":
                        self.linalg_names.add(alias.asname or "linalg")
        stack: list[tuple[ast.AST, int]] = [(tree, 1)]
        while stack:
            node, line = stack.pop()
            line = getattr(node, "lineno", line)
            self.visit(node, line)
            for child in ast.iter_child_nodes(node):
                stack.append((child, line))

    def check_name(self, line: int, name: str | None, what: str = "name") -> None:
        if name is None:
            return
        if name.startswith("__"):
            self.flag(line, f"dunder {what} '{name}' is not allowed")
        elif name in _FORBIDDEN_NAMES:
            self.flag(line, f"'{name}' is not allowed ({_FORBIDDEN_NAMES[name]})")

    def visit(self, node: ast.AST, line: int) -> None:
        kind = type(node)
        if kind not in _ALLOWED_NODES:
            if isinstance(node, ast.pattern | ast.match_case):  # inside a `match`, already flagged
                return
            words = _NODE_WORDS.get(kind.__name__, f"{kind.__name__} syntax is not allowed")
            self.flag(line, words)
            return
        if isinstance(node, ast.Name):
            self.check_name(line, node.id)
        elif isinstance(node, ast.Attribute):
            self.visit_attribute(node, line)
        elif isinstance(node, ast.FunctionDef):
            self.check_name(line, node.name, "function name")
        elif isinstance(node, ast.arg):
            self.check_name(line, node.arg, "argument name")
        elif isinstance(node, ast.keyword):
            if node.arg is not None and node.arg.startswith("__"):
                self.flag(line, f"dunder keyword argument '{node.arg}' is not allowed")
        elif isinstance(node, ast.ExceptHandler):
            self.check_name(line, node.name)
        elif isinstance(node, ast.comprehension) and node.is_async:
            self.flag(line, "'async for' is not allowed")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                self.visit_import(line, alias.name, alias.asname)
        elif isinstance(node, ast.ImportFrom):
            self.visit_import_from(node, line)

    def visit_attribute(self, node: ast.Attribute, line: int) -> None:
        attr = node.attr
        if attr.startswith("__"):
            self.flag(line, f"access to dunder attribute '{attr}' is not allowed")
            return
        if attr.startswith("_"):
            self.flag(line, f"access to private attribute '{attr}' is not allowed")
            return
        if attr in _FORBIDDEN_ATTRIBUTES:
            why = _FORBIDDEN_ATTRIBUTES[attr]
            self.flag(line, f"the attribute '.{attr}' is not allowed ({why})")
            return
        if attr.startswith(_FORBIDDEN_ATTRIBUTE_PREFIXES):
            self.flag(line, f"the attribute '.{attr}' is not allowed (frame, code and generator "
                            "internals are off limits)")
            return
        if isinstance(node.ctx, ast.Store):
            self.flag(line, f"assigning to an attribute ('.{attr} = ...') is not allowed")
        elif isinstance(node.ctx, ast.Del):
            self.flag(line, f"deleting an attribute ('del ....{attr}') is not allowed")
        base = node.value
        if isinstance(base, ast.Name):
            if base.id in self.numpy_names:
                self.check_module_attribute(line, "numpy", attr)
            elif base.id in self.linalg_names:
                self.check_module_attribute(line, "numpy.linalg", attr)
            elif base.id in self.math_names:
                self.check_module_attribute(line, "math", attr)
        elif (isinstance(base, ast.Attribute) and base.attr == "linalg"
              and isinstance(base.value, ast.Name) and base.value.id in self.numpy_names):
            self.check_module_attribute(line, "numpy.linalg", attr)

    def check_module_attribute(self, line: int, module: str, attr: str) -> None:
        allowed = {"numpy": NUMPY_ALLOWED, "numpy.linalg": NUMPY_LINALG_ALLOWED,
                   "math": MATH_ALLOWED}[module]
        if attr in allowed:
            return
        if module == "numpy":
            why = _NUMPY_FILE_HINTS.get(attr, "not in the sandbox's list of numerical functions")
            self.flag(line, f"numpy.{attr} is not available in the sandbox ({why})")
        else:
            self.flag(line, f"{module}.{attr} is not available in the sandbox")

    def visit_import(self, line: int, module: str, asname: str | None) -> None:
        if module not in ALLOWED_MODULES:
            self.flag(line, f"importing '{module}' is not allowed {_ONLY_MATH_NUMPY}")
            return
        self.check_name(line, asname)

    def bind_module(self, module: str, asname: str | None) -> None:
        if module not in ALLOWED_MODULES:
            return
        bound = asname or module.split(".")[0]
        if module == "math":
            self.math_names.add(bound)
        elif module == "numpy" or asname is None:
            self.numpy_names.add(bound)
        else:  # import numpy.linalg as la
            self.linalg_names.add(bound)

    def visit_import_from(self, node: ast.ImportFrom, line: int) -> None:
        module = node.module or ""
        if node.level:
            self.flag(line, f"relative imports are not allowed {_ONLY_MATH_NUMPY}")
            return
        if module not in ALLOWED_MODULES:
            self.flag(line, f"importing from '{module}' is not allowed {_ONLY_MATH_NUMPY}")
            return
        for alias in node.names:
            if alias.name == "*":
                self.flag(line, f"'from {module} import *' is not allowed; name what you use")
                continue
            self.check_module_attribute(line, module, alias.name)
            self.check_name(line, alias.asname)


def check_source(source: str, name: str | None = None) -> ast.Module:
    """Statically check ``source``; return its tree, or raise :class:`SandboxError` listing every
    violation with its line. With ``name``, also require a top-level ``def name(...)``.

    This runs in the calling process and executes nothing.
    """
    if not isinstance(source, str):
        raise TypeError(f"source must be a str, not {type(source).__name__}")
    if len(source) > _MAX_SOURCE_CHARS:
        raise SandboxError(f"the source is too long ({len(source)} characters; the limit is "
                           f"{_MAX_SOURCE_CHARS})")
    try:
        tree = ast.parse(source, filename=_CODE_FILENAME)
    except SyntaxError as exc:
        line = f"line {exc.lineno}: " if exc.lineno else ""
        raise SandboxError(f"{line}syntax error: {exc.msg}") from None
    except (ValueError, MemoryError, RecursionError) as exc:  # null bytes, absurd nesting
        raise SandboxError(f"the source cannot be parsed ({type(exc).__name__}: {exc})") from None
    checker = _Checker()
    checker.run(tree)
    violations = [message for _, message in sorted(set(checker.violations))]
    if violations:
        raise SandboxError("; ".join(violations), violations)
    if name is not None:
        if not name.isidentifier() or name.startswith("__"):
            raise SandboxError(f"{name!r} is not a valid function name")
        defined = {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}
        if name not in defined:
            found = ", ".join(sorted(defined)) or "none"
            raise SandboxError(f"no top-level function named '{name}' is defined "
                               f"(top-level functions: {found})")
    return tree


# --------------------------------------------------------------------------------------------
# The worker's namespace
# --------------------------------------------------------------------------------------------


class _ReadOnlyNamespace:
    """A module stand-in exposing a fixed set of attributes; it cannot be written to.

    User code cannot reach the slots (their names start with ``_``), and nothing here leads back
    to the real module object.
    """

    __slots__ = ("_ns_attrs", "_ns_name")

    def __init__(self, name: str, attrs: Mapping[str, Any]) -> None:
        object.__setattr__(self, "_ns_name", name)
        object.__setattr__(self, "_ns_attrs", dict(attrs))

    def __getattr__(self, attr: str) -> Any:
        try:
            return self._ns_attrs[attr]
        except KeyError:
            name = self._ns_name
            raise AttributeError(f"{name}.{attr} is not available in the sandbox") from None

    def __setattr__(self, attr: str, value: Any) -> None:
        raise AttributeError(f"{self._ns_name} is read-only in the sandbox")

    def __delattr__(self, attr: str) -> None:
        raise AttributeError(f"{self._ns_name} is read-only in the sandbox")

    def __dir__(self) -> list[str]:
        return sorted(self._ns_attrs)

    def __repr__(self) -> str:
        return f"<sandboxed module {self._ns_name!r}>"


class _IsNdarray(type):
    """Metaclass of the sandbox's ``np.ndarray``: ``isinstance`` checks work as with the real
    class, but the class cannot be called. The real constructor is an escape hatch:
    ``np.ndarray((1,), dtype=object, buffer=b"AAAAAAAA")`` turns raw bytes into object pointers."""

    def __instancecheck__(cls, obj: Any) -> bool:
        return isinstance(obj, np.ndarray)

    def __subclasscheck__(cls, sub: Any) -> bool:
        return isinstance(sub, type) and issubclass(sub, np.ndarray)


class _NdarrayStandIn(metaclass=_IsNdarray):
    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        raise TypeError("np.ndarray(...) is not available in the sandbox; use np.array, np.zeros "
                        "or np.full")


def _discard(*args: Any, **kwargs: Any) -> None:
    """``print`` in the sandbox: the worker has no output to print to."""


def _make_namespace() -> dict[str, Any]:
    """Globals for the user code: restricted builtins and the proxies of math and numpy."""
    linalg = _ReadOnlyNamespace("numpy.linalg",
                                {n: getattr(np.linalg, n) for n in NUMPY_LINALG_ALLOWED})
    numpy_attrs = {n: getattr(np, n) for n in NUMPY_ALLOWED}
    numpy_attrs["linalg"] = linalg
    numpy_attrs["ndarray"] = _NdarrayStandIn  # for isinstance checks only
    modules: dict[str, Any] = {
        "math": _ReadOnlyNamespace("math", {n: getattr(math, n) for n in MATH_ALLOWED}),
        "numpy": _ReadOnlyNamespace("numpy", numpy_attrs),
        "numpy.linalg": linalg,
    }

    def restricted_import(name: str, globals: Any = None, locals: Any = None,
                          fromlist: Any = (), level: int = 0) -> Any:
        if not level and name in modules:
            if name == "numpy.linalg" and not fromlist:
                return modules["numpy"]  # `import numpy.linalg` binds `numpy`
            return modules[name]
        # numpy's C code imports its helper modules (numpy._core._methods, ...) through the
        # builtins of the running frame, which are these; it only needs the side effect and then
        # takes the module from sys.modules itself. So: load numpy's own modules, hand out nothing.
        if not level and (name in sys.modules or name.startswith("numpy.")):
            if name not in sys.modules:
                real_import(name, fromlist=("__doc__",))
            return None
        raise ImportError(f"importing {name!r} is not allowed {_ONLY_MATH_NUMPY}")

    real_import = __import__
    builtins: dict[str, Any] = {**_BUILTIN_FUNCTIONS, **_EXCEPTIONS, "print": _discard,
                                "__import__": restricted_import}
    return {"__builtins__": builtins, "__name__": "llm_code", "math": modules["math"],
            "np": modules["numpy"], "numpy": modules["numpy"]}


# --------------------------------------------------------------------------------------------
# Results: numbers, lists of numbers, small dicts of numbers
# --------------------------------------------------------------------------------------------

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


# --------------------------------------------------------------------------------------------
# The worker process
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# The parent side
# --------------------------------------------------------------------------------------------

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
