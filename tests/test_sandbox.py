"""The sandbox for LLM-written functions: static check, limits, containment, correct values.

Everything runs real worker processes; nothing is mocked.
"""

from __future__ import annotations

import json
import math
import os
import pickle
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time

import gymnasium as gym
import numpy as np
import pytest

from align_gym.llm_rewards.sandbox import (
    ALLOWED_BUILTINS,
    NUMPY_ALLOWED,
    SandboxedFunction,
    SandboxError,
    check_source,
    load_function,
)

CANARY_TEXT = "canary: untouched"


@pytest.fixture(scope="module")
def host(tmp_path_factory):
    """Paths hostile code aims at: ``target`` must never appear, ``canary`` must stay as it is."""
    root = tmp_path_factory.mktemp("sandbox_host")
    canary = root / "canary.txt"
    canary.write_text(CANARY_TEXT)
    return {"target": str(root / "pwned.txt"), "canary": str(canary), "root": root}


def fn(body: str, header: str = "") -> str:
    """Source of ``def f(state):`` with ``body`` (dedented), after optional top-level ``header``."""
    return textwrap.dedent(header) + "def f(state):\n" + textwrap.indent(textwrap.dedent(body), "    ")


# -------------------------------------------------------------------------------------------
# Hostile corpus. ("reject", text): SandboxError at load time naming the violation;
# ("contain", regex): loads, and the call raises SandboxError whose reason matches.
# {target} / {canary} are filled with paths the test then checks.
# -------------------------------------------------------------------------------------------

HOSTILE = {
    # files
    "open_read": (fn("return len(open('/etc/passwd').read())"), "reject", "'open' is not allowed"),
    "open_write": (fn("open({target!r}, 'w').write('x')\nreturn 0"), "reject", "'open' is not allowed"),
    "open_canary_via_builtins": (fn("__builtins__['open']({canary!r}, 'w')\nreturn 0"), "reject",
                                 "dunder name '__builtins__'"),
    "with_open": (fn("with open({target!r}, 'w') as fh:\n    fh.write('x')\nreturn 0"), "reject",
                  "'with' statements are not allowed"),
    # imports, network, processes
    "import_os": (fn("return 0", "import os\n"), "reject", "line 1: importing 'os' is not allowed"),
    "import_socket": (fn("s = socket.socket()\nreturn 0", "import socket\n"), "reject",
                      "importing 'socket' is not allowed"),
    "from_urllib": (fn("return len(urlopen('http://example.com').read())",
                       "from urllib.request import urlopen\n"), "reject",
                    "importing from 'urllib.request' is not allowed"),
    "import_subprocess_inside": (fn("import subprocess\nsubprocess.run(['touch', {target!r}])\nreturn 0"),
                                 "reject", "line 2: importing 'subprocess' is not allowed"),
    "dunder_import": (fn("__import__('os').system('touch {target}')\nreturn 0"), "reject",
                      "dunder name '__import__'"),
    "import_os_as_np": (fn("return np.getcwd()", "import os as np\n"), "reject", "importing 'os'"),
    "relative_import": (fn("return 0", "from . import secrets\n"), "reject", "relative imports"),
    "fork_bomb_os": (fn("while True:\n    os.fork()", "import os\n"), "reject", "importing 'os'"),
    "os_fork_no_import": (fn("os.fork()\nreturn 0"), "contain", r"raised NameError: name 'os' is not defined at line 2"),
    "sys_exit_import": (fn("sys.exit(0)", "import sys\n"), "reject", "importing 'sys'"),
    "sys_exit_no_import": (fn("sys.exit(0)"), "contain", r"raised NameError: name 'sys' is not defined"),
    "raise_systemexit": (fn("raise SystemExit(3)"), "reject", "'SystemExit' is not allowed"),
    "exit_call": (fn("exit()"), "reject", "'exit' is not allowed"),
    "quit_call": (fn("quit()"), "reject", "'quit' is not allowed"),
    # dunder and introspection escapes
    "subclasses": (fn("return ().__class__.__bases__[0].__subclasses__()"), "reject",
                   "line 2: access to dunder attribute '__class__' is not allowed"),
    "func_globals": (fn("return f.__globals__['__builtins__']"), "reject", "dunder attribute '__globals__'"),
    "list_class": (fn("return [].__class__"), "reject", "dunder attribute '__class__'"),
    "type_mro": (fn("return type(state).__mro__"), "reject", "'type' is not allowed"),
    "int_mro_method": (fn("return int.mro()[-1]"), "reject", "'.mro' is not allowed"),
    "private_attribute": (fn("return state._data"), "reject", "private attribute '_data'"),
    "getattr_np_load": (fn("return getattr(np, 'load')('/etc/passwd')"), "reject", "'getattr' is not allowed"),
    "vars_call": (fn("return vars()"), "reject", "'vars' is not allowed"),
    "globals_call": (fn("return globals()['__builtins__']"), "reject", "'globals' is not allowed"),
    "star_builtins": (fn("return [*globals().values()]"), "reject", "'globals' is not allowed"),
    "exec_call": (fn("exec('import os')\nreturn 0"), "reject", "'exec' is not allowed"),
    "eval_call": (fn("return eval('1 + 1')"), "reject", "'eval' is not allowed"),
    "compile_call": (fn("return compile('1', 'x', 'eval')"), "reject", "'compile' is not allowed"),
    "breakpoint_call": (fn("breakpoint()"), "reject", "'breakpoint' is not allowed"),
    "format_attribute": (fn("return '{{0.__class__}}'.format(1)"), "reject", "'.format' is not allowed"),
    "str_format_unbound": (fn("return str.format('{{0.__class__.__mro__}}', state)"), "reject",
                           "'.format' is not allowed"),
    "format_map": (fn("return '{{x.__class__}}'.format_map({{'x': 1}})"), "reject", "'.format_map'"),
    "generator_frame": (fn("return (x for x in []).gi_frame.f_back.f_globals"), "reject", "'.gi_frame'"),
    "traceback_frame": (fn("try:\n    1 / 0\nexcept ZeroDivisionError as e:\n    return e.__traceback__.tb_frame"),
                        "reject", "dunder attribute '__traceback__'"),
    "lambda_import": (fn("return (lambda: __import__('os'))().getcwd()"), "reject", "dunder name '__import__'"),
    "lambda_globals": (fn("return (lambda: 0).__globals__"), "reject", "dunder attribute '__globals__'"),
    "lambda_default_smuggle": (fn("g = lambda o=open: o({target!r}, 'w')\nreturn g()"), "reject",
                               "'open' is not allowed"),
    "attribute_assignment": (fn("math.pi = 3\nreturn 0"), "reject", "assigning to an attribute"),
    # numpy escape hatches
    "np_load": (fn("return np.load('/etc/passwd')"), "reject", "numpy.load is not available"),
    "np_save": (fn("np.save({target!r}, np.zeros(3))\nreturn 0"), "reject", "numpy.save is not available"),
    "np_fromfile": (fn("return np.fromfile('/etc/passwd').sum()"), "reject", "numpy.fromfile"),
    "np_memmap": (fn("m = np.memmap({target!r}, mode='w+', shape=(10,))\nreturn 0"), "reject", "numpy.memmap"),
    "np_ctypeslib": (fn("return np.ctypeslib.as_array(0, (1,))"), "reject", "numpy.ctypeslib"),
    "np_lib_open_memmap": (fn("np.lib.format.open_memmap({target!r}, mode='w+', shape=(3,))\nreturn 0"),
                           "reject", "numpy.lib"),
    "np_frombuffer_big": (fn("return np.frombuffer(b'x' * 10**9, dtype=np.uint8).sum()"), "reject",
                          "numpy.frombuffer"),
    "np_datasource": (fn("return np.DataSource().open('/etc/passwd').read()"), "reject", "numpy.DataSource"),
    "np_testing": (fn("return np.testing.assert_equal(1, 1)"), "reject", "numpy.testing"),
    "np_alias_load": (fn("return npy.load('/etc/passwd')", "import numpy as npy\n"), "reject", "numpy.load"),
    "from_numpy_import_save": (fn("save({target!r}, [1])\nreturn 0", "from numpy import save\n"), "reject",
                               "numpy.save"),
    "ndarray_tofile": (fn("np.zeros(3).tofile({target!r})\nreturn 0"), "reject", "'.tofile' is not allowed"),
    "ndarray_ctypes": (fn("return np.zeros(3).ctypes.data"), "reject", "'.ctypes' is not allowed"),
    "np_runtime_alias_load": (fn("n = np\nreturn n.load('/etc/passwd')"), "contain",
                              r"raised AttributeError: numpy\.load is not available in the sandbox at line 3"),
    "np_runtime_alias_save": (fn("n = np\nn.save({target!r}, n.zeros(3))\nreturn 0"), "contain",
                              r"AttributeError: numpy\.save"),
    "ndarray_from_raw_buffer": (fn("return np.ndarray((1,), dtype='O', buffer=b'AAAAAAAA')[0]"), "contain",
                                r"raised TypeError: np\.ndarray\(\.\.\.\) is not available in the sandbox"),
    # other syntax off limits
    "class_def": (fn("return 0", "class A:\n    pass\n"), "reject", "line 1: class definitions are not allowed"),
    "global_stmt": (fn("global counter\ncounter = 1\nreturn 0"), "reject", "'global' statements"),
    "yield_stmt": (fn("yield 1"), "reject", "generator functions"),
    "async_def": ("async def f(state):\n    return 0\n", "reject", "async functions are not allowed"),
    # resource exhaustion: contained at call time
    "infinite_loop": (fn("while True:\n    pass"), "contain", r"^timed out after 1\.0 s$"),
    "list_bomb": (fn("return len([0] * 10**10)"), "contain", r"exceeded the memory limit \(256 MiB\) at line 2"),
    "str_bomb": (fn("return len('a' * 10**10)"), "contain", r"exceeded the memory limit"),
    "np_bomb": (fn("return float(np.ones(10**10).sum())"), "contain", r"exceeded the memory limit"),
    "growing_bomb": (fn("x = []\nwhile True:\n    x.append([0] * 10**6)"), "contain", r"exceeded the memory limit"),
    "bigint_bomb": (fn("return 2 ** 10 ** 10"), "contain", r"exceeded the memory limit|timed out"),
    "deep_recursion": (fn("return f(state) + 1"), "contain", r"exceeded the recursion limit \(\d+ frames\) at line 2"),
    "mutual_recursion": (fn("return g(state)", "def g(s):\n    return f(s)\n"), "contain", r"recursion limit"),
    "huge_list_output": (fn("return list(range(10**6))"), "contain", r"output too large"),
    "huge_list_output_1e8": (fn("return list(range(10**8))"), "contain", r"output too large|memory limit"),
    "huge_array_output": (fn("return np.zeros(10**7)"), "contain", r"output too large"),
    "huge_string_output": (fn("return 'a' * 10**8"), "contain", r"returned a str of length 100000000"),
    "huge_error_message": (fn("raise ValueError('x' * 10**7)"), "contain", r"^raised ValueError: x{300}\.\.\. at line 2$"),
    "top_level_memory_bomb": (fn("return 0", "BIG = [0] * 10**10\n"), "contain",
                              r"top-level code exceeded the memory limit .* at line 1"),
    "top_level_infinite_loop": (fn("return 0", "while True:\n    pass\n"), "contain",
                                r"timed out after 1\.0 s while loading"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_corpus(case, host):
    template, expect, pattern = HOSTILE[case]
    source = template.format(target=host["target"], canary=host["canary"])
    if expect == "reject":
        with pytest.raises(SandboxError) as err:
            load_function(source, "f")
        assert pattern in err.value.reason, err.value.reason
        assert err.value.violations and all(v.startswith("line ") for v in err.value.violations)
    else:
        with load_function(source, "f", timeout=1.0, memory_mb=256) as f:
            with pytest.raises(SandboxError) as err:
                f({"x": 1.0})
        assert re.search(pattern, err.value.reason), err.value.reason
        assert len(err.value.reason) < 1100
    assert not os.path.exists(host["target"])


def test_corpus_is_big_enough():
    assert len(HOSTILE) >= 25
    assert sum(expect == "contain" for _, expect, _ in HOSTILE.values()) >= 10


def test_cpu_limit_kills_a_busy_worker():
    with load_function(fn("x = 0\nwhile True:\n    x += 1"), "f", timeout=20.0, cpu_seconds=1) as f:
        with pytest.raises(SandboxError, match=r"exceeded the CPU time limit \(1 s\)"):
            f({})


def test_cpu_limit_holds_when_the_parent_ignores_sigxcpu():
    # An ignored signal is inherited across exec; NetHack (MiniHack) ignores SIGXCPU after a game.
    previous = signal.signal(signal.SIGXCPU, signal.SIG_IGN)
    try:
        with load_function(fn("while True:\n    pass"), "f", timeout=20.0, cpu_seconds=1) as f:
            with pytest.raises(SandboxError, match="exceeded the CPU time limit"):
                f({})
    finally:
        signal.signal(signal.SIGXCPU, previous)


def test_crash_by_signal_is_reported_and_the_worker_replaced():
    with load_function(fn("if state['spin']:\n    while True:\n        pass\nreturn 7"), "f", timeout=20.0) as f:
        assert f({"spin": False}) == 7
        pid = f.pid
        killer = threading.Timer(0.3, os.kill, (pid, signal.SIGSEGV))
        killer.start()
        with pytest.raises(SandboxError, match=r"worker crashed \(signal 11: SIGSEGV\)"):
            f({"spin": True})
        killer.join()
        assert f({"spin": False}) == 7
        assert f.pid not in (None, pid)


def test_hung_worker_is_killed_and_replaced():
    source = fn("while state['hang']:\n    pass\nreturn state['x'] * 2")
    with load_function(source, "f", timeout=0.5) as f:
        assert f({"hang": False, "x": 2}) == 4
        first = f.pid
        with pytest.raises(SandboxError) as err:
            f({"hang": True, "x": 2})
        assert err.value.reason == "timed out after 0.5 s"
        assert f.pid is None  # killed
        with pytest.raises(ProcessLookupError):
            os.kill(first, 0)
        assert f({"hang": False, "x": 5}) == 10  # a fresh worker
        assert f.pid not in (None, first)
        assert f.batch([{"hang": False, "x": i} for i in range(3)]) == [0, 2, 4]


def test_memory_error_replaces_the_worker():
    with load_function(fn("if state['big']:\n    return len([0] * 10**10)\nreturn 1"), "f", memory_mb=256) as f:
        assert f({"big": False}) == 1
        first = f.pid
        with pytest.raises(SandboxError, match="memory limit"):
            f({"big": True})
        assert f({"big": False}) == 1
        assert f.pid != first


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_worker_runs_under_rlimits_with_no_stdio():
    with load_function(fn("return 1"), "f", memory_mb=300, cpu_seconds=3) as f:
        assert f({}) == 1
        limits = {}
        with open(f"/proc/{f.pid}/limits") as fh:
            for line in fh.readlines()[1:]:
                name, soft = line[:26].strip(), line[26:47].strip()
                limits[name] = soft
        assert limits["Max file size"] == "0"
        assert limits["Max processes"] == "0"
        assert limits["Max core file size"] == "0"
        assert int(limits["Max open files"]) <= 64
        assert 300 * 2**20 < int(limits["Max address space"]) < 300 * 2**20 + 8 * 2**30
        assert 3 <= int(limits["Max cpu time"]) <= 60
        for fd in (0, 1, 2):
            assert os.readlink(f"/proc/{f.pid}/fd/{fd}") == os.devnull


def test_host_is_fine_after_the_corpus(host):
    assert not os.path.exists(host["target"])
    with open(host["canary"]) as fh:
        assert fh.read() == CANARY_TEXT
    assert sorted(p.name for p in host["root"].iterdir()) == ["canary.txt"]
    with load_function(fn("return -abs(state['x'] - state['goal_x'])"), "f", returns="float") as f:
        assert f({"x": 1.0, "goal_x": 4.5}) == -3.5


# -------------------------------------------------------------------------------------------
# Static check: messages
# -------------------------------------------------------------------------------------------


def test_rejection_messages_name_the_violation_and_line():
    source = "import math\n\nimport os\ndef f(state):\n    return [].__class__\n"
    with pytest.raises(SandboxError) as err:
        check_source(source)
    assert err.value.violations == (
        "line 3: importing 'os' is not allowed (only math and numpy are provided)",
        "line 5: access to dunder attribute '__class__' is not allowed",
    )
    assert err.value.reason == "; ".join(err.value.violations)
    with pytest.raises(SandboxError) as err:
        check_source("x = ().__class__")
    assert err.value.reason == "line 1: access to dunder attribute '__class__' is not allowed"


@pytest.mark.parametrize(("source", "name", "message"), [
    ("def g(state):\n    return 0\n", "f", "no top-level function named 'f' is defined (top-level functions: g)"),
    ("f = lambda state: 0\n", "f", "no top-level function named 'f'"),
    ("def f(state):\n    return (\n", "f", "syntax error"),
    ("-" * 50_000 + "1", "f", "cannot be parsed"),
    ("x = 1\n" * 30_000, "f", "the source is too long"),
])
def test_load_time_errors(source, name, message):
    with pytest.raises(SandboxError) as err:
        load_function(source, name)
    assert message in err.value.reason


def test_allow_lists_are_explicit():
    assert {"abs", "min", "max", "sum", "len", "range", "enumerate", "zip", "float", "int", "bool",
            "str", "round", "sorted", "list", "dict", "tuple", "set", "any", "all", "map", "filter",
            "isinstance", "pow", "divmod", "reversed"} <= ALLOWED_BUILTINS
    assert not {"open", "exec", "eval", "getattr", "type", "object", "__import__"} & ALLOWED_BUILTINS
    assert {"array", "sqrt", "clip", "where", "linalg", "sum"} <= NUMPY_ALLOWED
    assert not {"load", "save", "fromfile", "memmap", "ctypeslib", "lib", "frombuffer", "DataSource",
                "testing", "random", "f2py", "distutils"} & NUMPY_ALLOWED


# -------------------------------------------------------------------------------------------
# Legitimate functions: the sandbox gives what a direct call gives
# -------------------------------------------------------------------------------------------

STATES = [
    {"x": 1.0, "y": 2.0, "goal_x": 4.0, "goal_y": 6.0, "key_x": 0.0, "key_y": 3.0, "door_x": 2.0,
     "door_y": 2.0, "has_key": False, "door_open": False, "room": "hall", "angle": 0.3, "steps": 3},
    {"x": 0.0, "y": 3.0, "goal_x": 4.0, "goal_y": 6.0, "key_x": 0.0, "key_y": 3.0, "door_x": 2.0,
     "door_y": 2.0, "has_key": True, "door_open": False, "room": "kitchen", "angle": -1.2, "steps": 10},
    {"x": 2.0, "y": 2.0, "goal_x": 4.0, "goal_y": 6.0, "key_x": 0.0, "key_y": 3.0, "door_x": 2.0,
     "door_y": 2.0, "has_key": True, "door_open": True, "room": "kitchen", "angle": 2.5, "steps": 17,
     "bonus": 0.25},
    {"x": 4.0, "y": 6.0, "goal_x": 4.0, "goal_y": 6.0, "key_x": 0.0, "key_y": 3.0, "door_x": 2.0,
     "door_y": 2.0, "has_key": True, "door_open": True, "room": "garden", "angle": 3.1, "steps": 40},
]

LEGIT = {
    "distance_1d": ("""
        def potential(state):
            return -abs(state["x"] - state["goal_x"])
        """, "float"),
    "euclidean_math_sqrt": ("""
        import math
        def potential(state):
            dx = state["goal_x"] - state["x"]
            dy = state["goal_y"] - state["y"]
            return -math.sqrt(dx * dx + dy * dy)
        """, "float"),
    "stages_key_door_goal": ("""
        def dist(state, tx, ty):
            return abs(state["x"] - tx) + abs(state["y"] - ty)

        def potential(state):
            if not state["has_key"]:
                return 0.0 - 0.1 * dist(state, state["key_x"], state["key_y"])
            if not state["door_open"]:
                return 1.0 - 0.1 * dist(state, state["door_x"], state["door_y"])
            return 2.0 - 0.1 * dist(state, state["goal_x"], state["goal_y"])
        """, "float"),
    "numpy_norm": ("""
        import numpy as np
        def potential(state):
            pos = np.array([state["x"], state["y"]])
            goal = np.array([state["goal_x"], state["goal_y"]])
            return -float(np.linalg.norm(goal - pos))
        """, "float"),
    "math_exp_atan2": ("""
        from math import atan2, exp, hypot
        def potential(state):
            d = hypot(state["goal_x"] - state["x"], state["goal_y"] - state["y"])
            heading = atan2(state["goal_y"] - state["y"], state["goal_x"] - state["x"])
            return exp(-d) + 0.1 * abs(heading - state["angle"])
        """, "float"),
    "conditionals_on_strings": ("""
        ROOM_VALUE = {"hall": 0.0, "kitchen": 0.5, "garden": 1.0}
        def potential(state):
            value = ROOM_VALUE.get(state["room"], -1.0)
            if state["steps"] > 20:
                value -= 0.01 * (state["steps"] - 20)
            elif state["steps"] < 5:
                value += 0.05
            return value
        """, "float"),
    "loop_over_list": ("""
        WAYPOINTS = [(0, 3), (2, 2), (4, 6)]
        def potential(state):
            best = None
            for i, (wx, wy) in enumerate(WAYPOINTS):
                d = (state["x"] - wx) ** 2 + (state["y"] - wy) ** 2
                if best is None or d < best[1]:
                    best = (i, d)
            total = 0.0
            for k in ["x", "y"]:
                total += state[k]
            return best[0] - 0.01 * best[1] + 0.001 * total
        """, "float"),
    "helpers_lambda_comprehension": ("""
        import numpy
        SCALE = 2.0

        def _clip01(v):
            return min(1.0, max(0.0, v))

        def features(state):
            return {k: state[k] for k in ("x", "y") if isinstance(state[k], (int, float))}

        def potential(state):
            feats = features(state)
            ordered = sorted(feats.items(), key=lambda kv: -kv[1])
            label = f"{ordered[0][0]}={ordered[0][1]:.1f}"
            return SCALE * _clip01(sum(v for _, v in ordered) / 10.0) + len(label) * 0.0
        """, "float"),
    "try_except_default": ("""
        def potential(state):
            try:
                bonus = state["bonus"]
            except KeyError:
                bonus = 0.0
            return bonus - 0.1 * abs(state["x"] - state["goal_x"])
        """, "float"),
    "numpy_clip_where": ("""
        def potential(state):
            v = np.array([state["x"], state["y"], -state["goal_x"]])
            v = np.where(v > 1.5, v, 0.0)
            return float(np.clip(v, -2.0, 2.0).sum() + np.tanh(state["steps"] / 10))
        """, "float"),
    "recursive_helper": ("""
        def fib(n):
            return n if n < 2 else fib(n - 1) + fib(n - 2)

        def potential(state):
            return fib(int(state["x"]) + 5) / 100.0
        """, "float"),
    "numpy_array_methods": ("""
        def potential(state):
            a = np.array([state["x"], state["y"], state["goal_x"], 0.5])
            out = [a.sum(), a.mean(), a.var(), a.clip(0, 2).sum(), a.round(1).sum(), a.cumsum()[-1],
                   a.argmax(), np.median(a), np.percentile(a, 90), len(str(a)), np.sort(a)[0],
                   np.unique(a).size, np.interp(1.5, [0, 3], [0, 1]), np.einsum("i,i->", a, a),
                   np.isclose(a, 1).sum(), isinstance(a, np.ndarray), np.hypot(a[0], a[1])]
            return [float(v) for v in out]
        """, "any"),
    "dict_output": ("""
        def potential(state):
            d = abs(state["x"] - state["goal_x"]) + abs(state["y"] - state["goal_y"])
            return {"distance": d, "at_goal": d == 0, "stage": int(state["has_key"]) + int(state["door_open"])}
        """, "any"),
}

BATCHED = {
    "batched_list_comprehension": ("""
        def one(state):
            return -abs(state["x"] - state["goal_x"]) - abs(state["y"] - state["goal_y"])

        def potential(states):
            return [one(s) for s in states]
        """, "floats"),
    "batched_numpy": ("""
        import numpy as np
        def potential(states):
            pos = np.array([[s["x"], s["y"]] for s in states])
            goal = np.array([[s["goal_x"], s["goal_y"]] for s in states])
            return -np.linalg.norm(goal - pos, axis=1)
        """, "floats"),
}


def direct(source: str, name: str = "potential"):
    """The same function, run directly in this process with the real modules."""
    namespace = {"np": np, "numpy": np, "math": math}
    exec(textwrap.dedent(source), namespace)
    return namespace[name]


def as_plain(value):
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


@pytest.mark.parametrize("case", sorted(LEGIT))
def test_legit_potentials_match_direct_calls(case):
    source, returns = LEGIT[case]
    expected = [direct(source)(s) for s in STATES]
    with load_function(textwrap.dedent(source), "potential", returns=returns) as f:
        one_by_one = [f(s) for s in STATES]
        assert f.batch(STATES) == one_by_one
    if returns == "float":
        assert all(type(v) is float for v in one_by_one)
        assert one_by_one == pytest.approx([float(v) for v in expected], rel=1e-12, abs=1e-12)
    else:
        assert one_by_one == expected


@pytest.mark.parametrize("case", sorted(BATCHED))
def test_batched_potentials_over_a_list_of_states(case):
    source, returns = BATCHED[case]
    expected = as_plain(direct(source)(STATES))
    with load_function(textwrap.dedent(source), "potential", returns=returns) as f:
        got = f(STATES)
        assert f.batch([STATES, STATES[:2]]) == [got, got[:2]]
    assert got == pytest.approx(expected, rel=1e-12)
    assert all(type(v) is float for v in got)


def test_known_values():
    source, _ = LEGIT["stages_key_door_goal"]
    with load_function(textwrap.dedent(source), "potential", returns="float") as f:
        assert f.batch(STATES) == pytest.approx([-0.2, 0.7, 1.4, 2.0])


def test_numpy_array_input():
    source = "def potential(obs):\n    return float(np.clip(obs, -1.0, 1.0).sum())\n"
    with load_function(source, "potential") as f:
        assert f(np.array([0.5, 3.0, -7.0])) == 0.5
        assert f.batch([np.zeros(4), np.ones((2, 2))]) == [0.0, 4.0]


def test_batch_equals_per_item_calls():
    source = fn("return {'a': state['x'] ** 2, 'b': [state['x'], -state['x']], 'c': state['x'] > 1}")
    states = [{"x": float(i) / 3} for i in range(50)]
    with load_function(source, "f") as f:
        assert f.batch(states) == [f(s) for s in states]
        assert f.batch([]) == []
        assert f.batch(iter(states[:3])) == f.batch(states[:3])


# -------------------------------------------------------------------------------------------
# Errors in user code and result validation
# -------------------------------------------------------------------------------------------


def test_user_errors_name_exception_and_line():
    with load_function("def f(state):\n    x = state['x']\n    return x / 0\n", "f") as f:
        with pytest.raises(SandboxError) as err:
            f({"x": 1})
        assert err.value.reason == "raised ZeroDivisionError: division by zero at line 3"
    with load_function(fn("return state['goal_x'] - state['x']"), "f") as f:
        with pytest.raises(SandboxError) as err:
            f({"x": 1.0})
        assert err.value.reason == "raised KeyError: 'goal_x' at line 2"
        with pytest.raises(SandboxError) as err:
            f.batch([{"x": 1.0, "goal_x": 2.0}, {"x": 1.0, "goal_x": 2.0}, {"x": 1.0}])
        assert err.value.reason == "raised KeyError: 'goal_x' at line 2 (input 2 of 3)"
        assert f({"x": 1.0, "goal_x": 3.5}) == 2.5  # same worker, still fine


def test_result_types_are_validated():
    with load_function(fn("return state"), "f") as f:
        assert f(1) == 1 and f(2.5) == 2.5 and f(True) is True
        assert f([1, 2.5]) == [1, 2.5] and f({"a": 1}) == {"a": 1}
        assert f(np.float32(0.5)) == 0.5 and f(np.arange(3)) == [0, 1, 2]
        for bad, words in [(None, "None (did the function forget to return?)"), ("text", "a str"),
                           ([1, "a"], "a str"), ({1: 2}, "keys are not short strings"),
                           ([[[[1]]]], "nested more than 3 levels"), (1j, "complex"),
                           (2**70, "does not fit in 64 bits"), (np.array(["a"]), "dtype <U1")]:
            with pytest.raises(SandboxError) as err:
                f(bad)
            assert words in err.value.reason
    with load_function(fn("return state"), "f", returns="float") as f:
        assert f(3) == 3.0 and type(f(3)) is float and f(np.int64(2)) == 2.0
        with pytest.raises(SandboxError, match="expected a single number"):
            f([1.0])
    with load_function(fn("return state"), "f", returns="floats") as f:
        assert f([1, 2]) == [1.0, 2.0] and f(np.arange(2)) == [0.0, 1.0]
        with pytest.raises(SandboxError, match="expected a list of numbers"):
            f(1.0)


def test_output_cap_is_per_call():
    with load_function(fn("return [0.123456789] * state"), "f", max_output_bytes=10_000) as f:
        assert len(f(100)) == 100
        with pytest.raises(SandboxError, match="output too large.*10000 bytes"):
            f(1000)
        with pytest.raises(SandboxError, match="output too large"):
            f.batch([100] * 20)


def test_top_level_error_is_reported_and_remembered():
    f = load_function(fn("return 0", "X = undefined_name\n"), "f")
    with pytest.raises(SandboxError, match=r"top-level code raised NameError: name 'undefined_name' is not defined at line 1"):
        f.start()
    with pytest.raises(SandboxError, match="top-level code raised NameError"):
        f({})  # remembered: no new worker
    f.close()


# -------------------------------------------------------------------------------------------
# Lifecycle
# -------------------------------------------------------------------------------------------


def test_close_context_manager_and_pickle():
    f = load_function(fn("return state * 2"), "f", timeout=3.0, returns="float")
    assert f.pid is None  # lazy
    assert f(2) == 4.0
    pid = f.pid
    copy = pickle.loads(pickle.dumps(f))
    assert isinstance(copy, SandboxedFunction) and copy.pid is None and copy.timeout == 3.0
    f.close()
    f.close()
    with pytest.raises(ValueError, match="closed"):
        f(1)
    assert f.pid is None
    with copy:
        assert copy(5) == 10.0
        assert copy.pid == pid  # the same long-lived worker: same limits, same process
    assert "closed" in repr(copy)


def test_functions_with_the_same_limits_share_one_worker():
    with load_function(fn("return 1"), "f") as f, load_function(fn("return 2"), "f") as g, \
            load_function(fn("return 3"), "f", memory_mb=300) as h:
        assert (f({}), g({}), h({})) == (1, 2, 3)
        assert f.pid == g.pid != h.pid
        # a worker that died while idle is replaced, and both functions load again in the new one
        first = f.pid
        os.kill(first, signal.SIGKILL)
        time.sleep(0.2)
        assert (g({}), f({})) == (2, 1) and f.pid == g.pid != first


def test_workers_are_stopped_at_interpreter_exit():
    code = textwrap.dedent("""
        from align_gym.llm_rewards.sandbox import load_function
        f = load_function("def f(s):\\n    return s + 1\\n", "f")
        assert f(1) == 2
        keep = load_function("def g(s):\\n    return s\\n", "g").start()
        print(f.pid, keep.pid, flush=True)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    pids = [int(p) for p in out.stdout.split()]
    assert len(pids) == 2
    time.sleep(0.2)
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_bad_arguments():
    with pytest.raises(ValueError):
        load_function(fn("return 0"), "f", returns="int")
    with pytest.raises(ValueError):
        load_function(fn("return 0"), "f", timeout=0)
    with pytest.raises(TypeError):
        load_function(b"def f(s): return 0", "f")


# -------------------------------------------------------------------------------------------
# Anywhere: unguarded scripts, daemonic vector-env workers, fork
# -------------------------------------------------------------------------------------------


def test_an_unguarded_script_runs_once(tmp_path):
    marks = tmp_path / "marks.txt"
    script = tmp_path / "train.py"
    script.write_text(textwrap.dedent(f"""
        # no `if __name__ == "__main__":` guard, as many training scripts are written
        from align_gym.llm_rewards.sandbox import load_function
        with open({str(marks)!r}, "a") as fh:
            fh.write("ran\\n")  # a side effect that must happen once
        f = load_function("def f(s):\\n    return s['x'] + 1\\n", "f", returns="float")
        print(f({{"x": 1}}), f.batch([{{"x": 2}}, {{"x": 3}}]))
    """))
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["2.0", "[3.0,", "4.0]"]
    assert marks.read_text() == "ran\n"


def test_works_inside_sb3_subprocvecenv_workers():
    from sandboxed_env import SandboxedPotentialEnv
    from stable_baselines3.common.vec_env import SubprocVecEnv

    venv = SubprocVecEnv([SandboxedPotentialEnv] * 2)
    try:
        venv.reset()
        for expected in (2.0, 4.0):
            _, _, _, infos = venv.step(np.zeros(2, dtype=int))
            assert [info["phi"] for info in infos] == [expected, expected]
        assert len({info["pid"] for info in infos}) == 2 and os.getpid() not in {info["pid"] for info in infos}
        assert all(info["worker"] not in (None, info["pid"]) for info in infos)
    finally:
        venv.close()


def test_works_inside_gymnasium_asyncvectorenv_workers():
    from sandboxed_env import SandboxedPotentialEnv

    envs = gym.vector.AsyncVectorEnv([SandboxedPotentialEnv] * 2)
    try:
        envs.reset(seed=0)
        _, _, _, _, infos = envs.step(np.zeros(2, dtype=int))
        _, _, _, _, infos = envs.step(np.zeros(2, dtype=int))
        assert infos["phi"].tolist() == [4.0, 4.0]
    finally:
        envs.close()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_starts_its_own_worker():
    with load_function(fn("return state * 3"), "f", returns="float") as f:
        assert f(1) == 3.0
        parent_worker = f.pid
        read_end, write_end = os.pipe()
        child = os.fork()
        if child == 0:  # the child: never talk on the parent's pipes
            try:
                value, worker = f(2), f.pid
                os.write(write_end, json.dumps([value, worker]).encode())
            finally:
                os._exit(0)
        os.close(write_end)
        _, status = os.waitpid(child, 0)
        value, child_worker = json.loads(os.read(read_end, 1000))
        os.close(read_end)
        assert os.waitstatus_to_exitcode(status) == 0
        assert value == 6.0 and child_worker not in (None, parent_worker)
        assert f(4) == 12.0 and f.pid == parent_worker  # the parent's worker is untouched
