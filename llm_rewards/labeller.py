"""A labeller that runs in a child program, so a model's forward passes never compete with the env
loop for the GIL (``benchmarks/annotator_overhead.py``).

The child is ``python -I -m align_gym.llm_rewards.labeller`` (see :mod:`align_gym.llm_rewards.child`),
not a :mod:`multiprocessing` process: it starts from scripts without a main guard and from daemonic
processes. ``factory`` is sent with cloudpickle, so it may be a function of the caller's script;
the child gets the caller's ``sys.path`` to import what the factory needs.

>>> labeller = ProcessLabeller(lambda: (lambda captions: [len(c) for c in captions]))
>>> labeller(["You open the door.", "Nothing happens."])
[18, 16]
>>> labeller.close()
"""

from __future__ import annotations

import pickle
import sys
import threading
import traceback
from collections.abc import Callable, Sequence
from typing import Any

from .child import ChildError, ChildProgram, child_streams, describe_exit, read_frame, write_frame

LabelFn = Callable[[list[Any]], Sequence[Any]]
MODULE = "align_gym.llm_rewards.labeller"


class ProcessLabeller:
    """Calls ``factory()``'s labeller in a child program: each call sends a batch and waits up to
    ``timeout`` seconds for the labels.

    A child that dies or hangs past ``timeout`` is killed and started again on the next call; the
    failed call raises, so the :class:`~align_gym.llm_rewards.Annotator` counts it and retries the
    batch. ``threads`` caps the child's torch threads (leave the other cores to the env loop).
    """

    def __init__(self, factory: Callable[[], LabelFn], threads: int = 1, timeout: float = 300.0,
                 startup_timeout: float = 300.0):
        import cloudpickle

        self.factory, self.threads, self.timeout, self.startup_timeout = factory, threads, timeout, startup_timeout
        # The factory travels as bytes inside the frame: the child sets sys.path before loading it.
        self._init = pickle.dumps({"factory": cloudpickle.dumps(factory), "threads": threads,
                                   "sys_path": list(sys.path)})
        self._child: ChildProgram | None = None
        self._lock = threading.Lock()
        self.restarts = 0

    def _ready_child(self) -> ChildProgram:
        if self._child is None or not self._child.alive():
            if self._child is not None:
                self._child.stop(graceful=False)
                self.restarts += 1
            child = ChildProgram(MODULE)
            try:
                status, payload = pickle.loads(child.request(self._init, self.startup_timeout, when="while starting"))
            except ChildError as error:
                child.stop(graceful=False)
                raise RuntimeError(f"the labeller process failed to start: {error.reason}, "
                                   f"{describe_exit(error.returncode)}") from None
            if status != "ok":
                child.stop(graceful=False)
                raise RuntimeError(f"the labeller factory raised {payload}")
            self._child = child
        return self._child

    def __call__(self, batch: list[Any]) -> list[Any]:
        with self._lock:
            child = self._ready_child()
            try:
                status, payload = pickle.loads(child.request(pickle.dumps(list(batch)), self.timeout))
            except ChildError as error:  # hung (killed) or died: the next call starts a new one
                child.stop(graceful=False)
                raise RuntimeError(f"the labeller process {error.reason}") from None
        if status != "ok":
            raise RuntimeError(f"the labeller raised {payload}")
        return payload

    @property
    def pid(self) -> int | None:
        return self._child.pid if self._child is not None and self._child.alive() else None

    def close(self) -> None:
        with self._lock:
            if self._child is not None:
                self._child.stop()
                self._child = None


def main() -> None:
    """The child: build the labeller from the first frame, then label batches until end of input."""
    frames_in, out = child_streams()
    first = read_frame(frames_in)
    if first is None:
        return
    try:
        init = pickle.loads(first)
        sys.path[:] = init["sys_path"]
        try:
            import torch

            torch.set_num_threads(init["threads"])
        except ImportError:
            pass
        label_fn = pickle.loads(init["factory"])()
    except Exception as error:  # reported to the parent, which says so
        write_frame(out, pickle.dumps(("error", _describe(error))))
        return
    write_frame(out, pickle.dumps(("ok", None)))
    while (frame := read_frame(frames_in)) is not None:
        try:
            reply = ("ok", list(label_fn(pickle.loads(frame))))
        except Exception as error:  # reported to the parent, which counts and retries it
            reply = ("error", _describe(error))
        write_frame(out, pickle.dumps(reply))


def _describe(error: Exception) -> str:
    return f"{type(error).__name__}: {error}\n{traceback.format_exc(limit=3)}"


if __name__ == "__main__":
    main()
