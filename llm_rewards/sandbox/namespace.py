"""The worker's namespace for user code: restricted builtins, read-only proxies of ``math``,
``numpy`` and ``numpy.linalg``, and an ``np.ndarray`` stand-in good for ``isinstance`` only."""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping
from typing import Any

import numpy as np

from .static_check import (
    _BUILTIN_FUNCTIONS,
    _EXCEPTIONS,
    _ONLY_MATH_NUMPY,
    MATH_ALLOWED,
    NUMPY_ALLOWED,
    NUMPY_LINALG_ALLOWED,
)


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
