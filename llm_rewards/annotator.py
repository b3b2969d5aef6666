"""Asynchronous labelling, so that env stepping never waits for a language model.

``submit(items)`` returns at once: unseen items (deduplicated against those labelled, pending and
in flight) join a bounded queue. A worker thread takes the newest pending items in batches (as
ONI's annotator does), calls ``label_fn(batch) -> labels`` and posts the labels, which
``poll()`` hands back. Reward models learn from what has arrived.

- Every submitted item that is not a duplicate comes back through ``poll()`` once: with its
  label, or with ``None`` when it got none (its answer did not parse, its batch failed, the queue
  dropped or refused it). An item that came back ``None`` is forgotten and may be submitted again
  (the caller bounds how often).
- Queue full: the oldest pending item is dropped (and counted) to make room, since recent
  captions are what the agent sees now. ``policy="drop_new"`` refuses the new item instead.
- Errors in ``label_fn`` are retried ``max_retries`` times with backoff, then the batch is counted
  as failed; nothing is raised into the env loop.
- A ``label_fn`` that hangs past ``label_timeout`` seconds is abandoned (its call runs in a thread
  of its own, which is left behind) and the batch retried; a
  :class:`~align_gym.llm_rewards.labeller.ProcessLabeller` enforces its own timeout instead, by
  killing and restarting its child. An exception anywhere else (an ``on_error`` callback that
  raises) is counted too: the worker thread lives on and the batch's items are released.
- A label of ``None`` from ``label_fn`` means the model's answer could not be parsed: counted as
  unparsed.
- ``stats`` counts all of it: submitted, duplicates, dropped, labelled, unparsed, batches,
  errors, timeouts, callback errors, failed items.

A model running in a thread of the env's process competes with the env loop for the GIL (a
transformers forward pass is thousands of Python-level operations), which slows both. Wrap the
labeller in a ``ProcessLabeller`` to run it in a child program instead: the worker thread then
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

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from .labeller import ProcessLabeller

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
    timeouts: int = 0
    callback_errors: int = 0
    failed: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


class Annotator:
    """A worker thread that labels submitted items in batches; see the module docstring."""

    def __init__(self, label_fn: LabelFn, *, batch_size: int = 32, max_pending: int = 10_000,
                 policy: str = "drop_oldest", max_retries: int = 3, retry_delay: float = 0.5,
                 on_error: Callable[[Exception], None] | None = None, label_timeout: float | None = 600.0):
        if policy not in ("drop_oldest", "drop_new"):
            raise ValueError(f"policy must be 'drop_oldest' or 'drop_new', got {policy!r}")
        self.label_fn, self.batch_size, self.max_pending, self.policy = label_fn, batch_size, max_pending, policy
        self.max_retries, self.retry_delay, self.on_error = max_retries, retry_delay, on_error
        # A ProcessLabeller kills and restarts its own hung child: call it directly.
        self.label_timeout = None if isinstance(label_fn, ProcessLabeller) else label_timeout
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
                        self._arrived[item] = None
                        continue
                    self._arrived[self._pending.popitem(last=False)[0]] = None
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
                labels = list(self._call_label_fn(list(batch)))
                if len(labels) != len(batch):
                    raise ValueError(f"label_fn returned {len(labels)} labels for {len(batch)} items")
                return labels
            except Exception as error:  # never raised into the env loop: counted and retried
                with self._condition:
                    self.stats.errors += 1
                    self.stats.timeouts += isinstance(error, TimeoutError)
                self._report(error)
                if attempt < self.max_retries and not self._stopping:
                    time.sleep(self.retry_delay * 2 ** attempt)
        return None

    def _call_label_fn(self, batch: list[Hashable]) -> Sequence[Any]:
        """``label_fn(batch)``, abandoned (left running in its own thread) past ``label_timeout``."""
        if self.label_timeout is None:
            return self.label_fn(batch)
        outcome: dict[str, Any] = {}

        def call() -> None:
            try:
                outcome["labels"] = self.label_fn(batch)
            except BaseException as error:  # noqa: BLE001  (handed to the waiting thread)
                outcome["error"] = error

        thread = threading.Thread(target=call, name="align-gym-label-call", daemon=True)
        thread.start()
        thread.join(self.label_timeout)
        if thread.is_alive():
            raise TimeoutError(f"label_fn took more than {self.label_timeout} s: abandoned, the batch is retried")
        if "error" in outcome:
            raise outcome["error"]
        return outcome["labels"]

    def _report(self, error: Exception) -> None:
        if self.on_error is None:
            return
        try:
            self.on_error(error)
        except Exception:  # a callback's own failure must not stop the labelling
            with self._condition:
                self.stats.callback_errors += 1

    def _run(self) -> None:
        while True:
            batch = self._take_batch()
            if batch is None:
                return
            try:
                labels = self._label(batch)
            except BaseException:  # noqa: BLE001  (whatever it was, the worker lives on)
                labels = None
                with self._condition:
                    self.stats.errors += 1
            with self._condition:
                self._in_flight.difference_update(batch)
                self.stats.batches += 1
                if labels is None:
                    self.stats.failed += len(batch)  # not remembered: they may be submitted again
                    self._arrived.update(dict.fromkeys(batch))
                else:
                    for item, label in zip(batch, labels):
                        if label is not None:  # an unparsed answer is not remembered either
                            self.labels[item] = label
                        self._arrived[item] = label
                        self.stats.labelled += 1
                        self.stats.unparsed += label is None
                self._condition.notify_all()
