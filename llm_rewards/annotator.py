"""Asynchronous labelling, so that env stepping never waits for a language model.

``submit(items)`` returns at once: unseen items (deduplicated against those labelled, pending and
in flight) join a bounded queue. A worker thread takes the newest pending items in batches (as
ONI's annotator does), calls ``label_fn(batch) -> labels`` and posts the labels, which
``poll()`` hands back. Reward models learn from what has arrived.

- Queue full: the oldest pending item is dropped (and counted) to make room, since recent
  captions are what the agent sees now. ``policy="drop_new"`` refuses the new item instead.
- Errors in ``label_fn`` are retried ``max_retries`` times with backoff, then the batch is counted
  as failed and its items may be submitted again; nothing is raised into the env loop.
- A label of ``None`` means the model's answer could not be parsed: counted as unparsed, kept.

A model running in a thread of the env's process competes with the env loop for the GIL (a
transformers forward pass is thousands of Python-level operations), which slows both. Wrap the
labeller in :class:`ProcessLabeller` to run it in a child process instead: the worker thread then
only waits on a pipe, and the env keeps its speed (``benchmarks/annotator_overhead.py``).

>>> annotator = Annotator(lambda captions: [len(c) for c in captions])
>>> annotator.submit(["You pick up the key.", "You pick up the key."])
1
>>> annotator.wait_idle(5)
True
>>> annotator.poll()
{'You pick up the key.': 20}
>>> annotator.close()
"""

from __future__ import annotations

import multiprocessing as mp
import threading
import time
import traceback
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

LabelFn = Callable[[list[Any]], Sequence[Any]]


@dataclass
class AnnotatorStats:
    submitted: int = 0
    duplicates: int = 0
    dropped: int = 0
    labelled: int = 0
    unparsed: int = 0
    batches: int = 0
    errors: int = 0
    failed: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


class Annotator:
    """A worker thread that labels submitted items in batches; see the module docstring."""

    def __init__(self, label_fn: LabelFn, *, batch_size: int = 32, max_pending: int = 10_000,
                 policy: str = "drop_oldest", max_retries: int = 3, retry_delay: float = 0.5,
                 on_error: Callable[[Exception], None] | None = None):
        if policy not in ("drop_oldest", "drop_new"):
            raise ValueError(f"policy must be 'drop_oldest' or 'drop_new', got {policy!r}")
        self.label_fn, self.batch_size, self.max_pending, self.policy = label_fn, batch_size, max_pending, policy
        self.max_retries, self.retry_delay, self.on_error = max_retries, retry_delay, on_error
        self.stats = AnnotatorStats()
        self.labels: dict[Hashable, Any] = {}
        self._pending: OrderedDict[Hashable, None] = OrderedDict()
        self._in_flight: set[Hashable] = set()
        self._arrived: dict[Hashable, Any] = {}
        self._condition = threading.Condition()
        self._stopping = False
        self._worker = threading.Thread(target=self._run, name="align-gym-annotator", daemon=True)
        self._worker.start()

    def submit(self, items: Iterable[Hashable]) -> int:
        """Queue the unseen items; returns how many were queued. Never blocks on the worker."""
        queued = 0
        with self._condition:
            for item in items:
                self.stats.submitted += 1
                if item in self.labels or item in self._pending or item in self._in_flight:
                    self.stats.duplicates += 1
                    continue
                if len(self._pending) >= self.max_pending:
                    self.stats.dropped += 1
                    if self.policy == "drop_new":
                        continue
                    self._pending.popitem(last=False)
                self._pending[item] = None
                queued += 1
            if queued:
                self._condition.notify()
        return queued

    def poll(self) -> dict[Hashable, Any]:
        """Labels that arrived since the last poll."""
        with self._condition:
            arrived, self._arrived = self._arrived, {}
        return arrived

    @property
    def pending(self) -> int:
        with self._condition:
            return len(self._pending) + len(self._in_flight)

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until nothing is pending or in flight (for tests and shutdown); True if idle."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._condition:
            while self._pending or self._in_flight:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._condition.wait(remaining)
        return True

    def close(self, timeout: float = 10.0) -> None:
        """Stop the worker after the batch in flight; pending items are left unlabelled."""
        with self._condition:
            self._stopping = True
            self._condition.notify_all()
        self._worker.join(timeout)

    def __enter__(self) -> Annotator:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _take_batch(self) -> list[Hashable] | None:
        with self._condition:
            while not self._pending and not self._stopping:
                self._condition.wait()
            if self._stopping:
                return None
            batch = []
            while self._pending and len(batch) < self.batch_size:
                batch.append(self._pending.popitem(last=True)[0])  # newest first
            self._in_flight.update(batch)
            return batch

    def _label(self, batch: list[Hashable]) -> Sequence[Any] | None:
        for attempt in range(self.max_retries + 1):
            try:
                labels = list(self.label_fn(list(batch)))
                if len(labels) != len(batch):
                    raise ValueError(f"label_fn returned {len(labels)} labels for {len(batch)} items")
                return labels
            except Exception as error:  # never raised into the env loop: counted and retried
                with self._condition:
                    self.stats.errors += 1
                if self.on_error is not None:
                    self.on_error(error)
                if attempt < self.max_retries and not self._stopping:
                    time.sleep(self.retry_delay * 2 ** attempt)
        return None

    def _run(self) -> None:
        while True:
            batch = self._take_batch()
            if batch is None:
                return
            labels = self._label(batch)
            with self._condition:
                self._in_flight.difference_update(batch)
                self.stats.batches += 1
                if labels is None:
                    self.stats.failed += len(batch)  # not remembered: they may be submitted again
                else:
                    for item, label in zip(batch, labels):
                        self.labels[item] = label
                        self._arrived[item] = label
                        self.stats.labelled += 1
                        self.stats.unparsed += label is None
                self._condition.notify_all()


def _labeller_process(factory: Callable[[], LabelFn], connection: Any, threads: int) -> None:
    try:
        import torch

        torch.set_num_threads(threads)  # leave the other cores to the env loop
    except ImportError:
        pass
    label_fn = factory()
    while True:
        try:
            batch = connection.recv()
        except EOFError:
            return
        if batch is None:
            return
        try:
            connection.send(("ok", list(label_fn(batch))))
        except Exception as error:  # reported to the parent, which counts and retries it
            connection.send(("error", f"{type(error).__name__}: {error}\n{traceback.format_exc(limit=3)}"))


class ProcessLabeller:
    """A labeller that runs in a child process: ``factory()`` builds the real one there (load the
    model inside it), and each call sends a batch over a pipe and waits for the labels.

    ``factory`` must be picklable (a module-level function or a ``functools.partial`` of one).
    A child that dies is started again on the next call; the failed call raises, so the
    :class:`Annotator` retries and counts it.
    """

    def __init__(self, factory: Callable[[], LabelFn], threads: int = 1):
        self.factory, self.threads = factory, threads
        self._context = mp.get_context("spawn")
        self._process: Any = None
        self._connection: Any = None

    def _start(self) -> None:
        parent, child = self._context.Pipe()
        self._process = self._context.Process(target=_labeller_process, args=(self.factory, child, self.threads),
                                              daemon=True, name="align-gym-labeller")
        self._process.start()
        child.close()
        self._connection = parent

    def __call__(self, batch: list[Any]) -> list[Any]:
        if self._process is None or not self._process.is_alive():
            self._start()
        try:
            self._connection.send(batch)
            status, payload = self._connection.recv()
        except (EOFError, OSError, BrokenPipeError) as error:
            self._process = None
            raise RuntimeError(f"the labeller process died: {error!r}") from error
        if status != "ok":
            raise RuntimeError(f"the labeller raised {payload}")
        return payload

    def close(self) -> None:
        if self._process is not None and self._process.is_alive():
            try:
                self._connection.send(None)
            except (OSError, BrokenPipeError):
                pass
            self._process.join(5)
            if self._process.is_alive():
                self._process.kill()
        self._process = None
