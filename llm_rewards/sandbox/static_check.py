"""Allow-lists and the static check: :func:`check_source` parses LLM-written code and rejects
every node, name, attribute and import off the lists, in plain words with its line. Runs in the
calling process and executes nothing."""

from __future__ import annotations

import ast
import math
from typing import Any

import numpy as np

from .errors import SandboxError

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
