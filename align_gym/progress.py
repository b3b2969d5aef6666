"""Progress that reads well where it is shown: a live bar on a terminal, whole lines in a log.

A tqdm bar redraws itself with carriage returns many times a second; in a log (CI, a file,
``nohup``) that is one line of thousands of updates. :func:`progress_bar` gives a tqdm bar on a
terminal and, anywhere else, a :class:`LogProgress` with the same methods that prints one line
per ``every`` seconds (and the lines a caller writes, such as one per finished bench cell).

>>> import io
>>> log = io.StringIO()
>>> bar = progress_bar(total=100, desc="train", unit="step", stream=log)
>>> bar.update(100); bar.write("checkpoint saved"); bar.close()
>>> print(log.getvalue().strip())
checkpoint saved
train: 100/100 step (100%) in 0 s
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

from tqdm import tqdm


class LogProgress:
    """tqdm's ``update``/``set_postfix``/``write``/``close`` as whole lines: a summary line at most
    once per ``every`` seconds and one when closed."""

    def __init__(self, total: float, desc: str = "", unit: str = "it", stream: TextIO | None = None,
                 every: float = 60.0, disable: bool = False):
        self.total, self.desc, self.unit, self.every, self.disable = total, desc, unit, every, disable
        self.stream = stream if stream is not None else sys.stderr
        self.n: float = 0
        self.postfix = ""
        self._start = self._last = time.monotonic()

    def update(self, n: float = 1) -> None:
        self.n += n
        if time.monotonic() - self._last >= self.every:
            self._summary()

    def set_postfix_str(self, text: str = "", refresh: bool = True) -> None:
        self.postfix = text

    def set_postfix(self, **values: Any) -> None:
        self.postfix = ", ".join(f"{key}={value}" for key, value in values.items())

    def write(self, line: str) -> None:
        if not self.disable:
            print(line, file=self.stream, flush=True)

    def _summary(self) -> None:
        self._last = time.monotonic()
        elapsed = self._last - self._start
        share = f" ({self.n / self.total:.0%})" if self.total else ""
        rate = self.n / elapsed if elapsed > 0 else 0.0
        left = f", about {(self.total - self.n) / rate:.0f} s left" if rate > 0 and self.n < self.total else ""
        postfix = f" | {self.postfix}" if self.postfix else ""
        self.write(f"{self.desc}: {self.n:,.0f}/{self.total:,.0f} {self.unit}{share} in {elapsed:.0f} s{left}{postfix}")

    def close(self) -> None:
        if self.n or self.total:
            self._summary()
        self.disable = True  # closed: nothing more is printed


def progress_bar(total: float, desc: str = "", unit: str = "it", enabled: bool = True,
                 stream: TextIO | None = None, every: float = 60.0, **tqdm_options: Any) -> Any:
    """A tqdm bar when ``stream`` (stderr by default) is a terminal, else a :class:`LogProgress`
    printing a line every ``every`` seconds. ``enabled=False`` prints nothing at all."""
    stream = stream if stream is not None else sys.stderr
    if stream.isatty():
        return tqdm(total=total, desc=desc, unit=unit, disable=not enabled, file=stream, **tqdm_options)
    return LogProgress(total, desc=desc, unit=unit, stream=stream, every=every, disable=not enabled)
