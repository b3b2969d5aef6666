"""A child Python program on pipes: how the sandbox worker and the process labeller start.

The child is its own program (``python -I -m <module>``, started with :mod:`subprocess`), never a
:mod:`multiprocessing` process: spawn re-imports the caller's ``__main__`` (a script without a main
guard would run again inside every child), and daemonic processes (SB3 ``SubprocVecEnv`` and
gymnasium ``AsyncVectorEnv`` workers) may not start multiprocessing children at all. A child
costs a fresh interpreter and what its module imports, whatever the parent has loaded.

Messages are frames: a 4-byte big-endian length, then the bytes. The parent writes to the child's
stdin and reads its stdout with a deadline; the child moves both off fds 0 and 1 at start, so
nothing it prints can corrupt a frame. A process forked from the parent never talks on the
parent's pipes: :class:`ChildProgram` knows the pid that started it, and a fork forgets it.
"""

from __future__ import annotations

import atexit
import os
import select
import signal
import struct
import subprocess
import sys
import time
import weakref
from typing import IO

_HEADER = struct.Struct(">I")
MAX_FRAME = 1 << 31


class ChildError(Exception):
    """The child timed out, died, or sent a frame larger than allowed."""

    def __init__(self, reason: str, returncode: int | None = None):
        super().__init__(reason)
        self.reason, self.returncode = reason, returncode


def write_frame(stream: IO[bytes], data: bytes) -> None:
    stream.write(_HEADER.pack(len(data)) + data)
    stream.flush()


def read_frame(stream: IO[bytes]) -> bytes | None:
    """The child's side: one frame, blocking; None at end of input."""
    header = stream.read(_HEADER.size)
    if len(header) < _HEADER.size:
        return None
    (length,) = _HEADER.unpack(header)
    data = stream.read(length)
    return data if len(data) == length else None


def child_streams() -> tuple[IO[bytes], IO[bytes]]:
    """In the child: the frame streams, moved off stdin and stdout (which then read from and write
    to /dev/null, stderr too), so that no stray print reaches the parent's reader."""
    frames_in = os.fdopen(os.dup(0), "rb", buffering=0)
    frames_out = os.fdopen(os.dup(1), "wb", buffering=0)
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    os.close(devnull)
    return frames_in, frames_out


_LIVE: weakref.WeakSet[ChildProgram] = weakref.WeakSet()


class ChildProgram:
    """``python -I -m module`` with frame pipes, owned by the process that started it.

    ``request(data, timeout)`` sends a frame and waits for the reply frame; on a timeout the child
    is killed, and a death or an oversized frame stops it too; all raise :class:`ChildError`.
    Not thread-safe by itself: callers hold their own lock.
    """

    def __init__(self, module: str):
        command = [sys.executable, "-I", "-m", module]  # -I: no user site, no PYTHON* variables
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=subprocess.DEVNULL, close_fds=True, start_new_session=True)
        self.owner_pid = os.getpid()
        self.pid = self.process.pid
        self._stdin: IO[bytes] = self.process.stdin  # type: ignore[assignment]
        self._stdout: IO[bytes] = self.process.stdout  # type: ignore[assignment]
        self.stopped = False
        _LIVE.add(self)

    def alive(self) -> bool:
        return not self.stopped and os.getpid() == self.owner_pid and self.process.poll() is None

    def send(self, data: bytes) -> None:
        try:
            write_frame(self._stdin, data)
        except (BrokenPipeError, OSError):  # it died while idle
            raise self._death("") from None

    def receive(self, timeout: float, max_bytes: int = MAX_FRAME, when: str = "") -> bytes:
        deadline = time.monotonic() + timeout
        header = self._read_exactly(_HEADER.size, deadline, timeout, when)
        (length,) = _HEADER.unpack(header)
        if length > max_bytes:
            self.stop(graceful=False)
            raise ChildError(f"reply too large: {length} bytes, more than {max_bytes}")
        return self._read_exactly(length, deadline, timeout, when)

    def request(self, data: bytes, timeout: float, max_bytes: int = MAX_FRAME, when: str = "") -> bytes:
        self.send(data)
        return self.receive(timeout, max_bytes, when)

    def _read_exactly(self, count: int, deadline: float, timeout: float, when: str) -> bytes:
        chunks, missing, fd = [], count, self._stdout.fileno()
        while missing:
            left = deadline - time.monotonic()
            ready = select.select([fd], [], [], max(left, 0.0))[0] if left > 0 else []
            if not ready:
                self.stop(graceful=False)
                raise ChildError(f"timed out after {round(timeout, 3)} s {when}".strip())
            chunk = os.read(fd, missing)
            if not chunk:
                raise self._death(when)
            chunks.append(chunk)
            missing -= len(chunk)
        return b"".join(chunks)

    def _death(self, when: str) -> ChildError:
        try:
            returncode = self.process.wait(1.0)
        except subprocess.TimeoutExpired:
            returncode = None
        self.stop(graceful=False)
        return ChildError(f"the child exited {when}".strip(), returncode)

    def stop(self, graceful: bool = True) -> None:
        """Close the pipes and make sure the child is gone (it leaves on end of input)."""
        if self.stopped:
            return
        self.stopped = True
        _LIVE.discard(self)
        if os.getpid() != self.owner_pid:  # a forked copy: the child is the parent's to stop
            return
        for stream in (self._stdin, self._stdout):
            try:
                stream.close()
            except OSError:
                pass
        try:
            if graceful:
                self.process.wait(0.5)
        except subprocess.TimeoutExpired:
            pass
        if self.process.poll() is None:
            try:
                os.killpg(self.pid, signal.SIGKILL)  # its own session: nothing else is in it
            except (ProcessLookupError, PermissionError):
                pass
            try:
                self.process.wait(2.0)
            except subprocess.TimeoutExpired:
                pass


def stop_all_children() -> None:
    """Stop every child this process started (at interpreter exit)."""
    for child in list(_LIVE):
        child.stop(graceful=False)


def _forget_after_fork() -> None:
    """In a forked child: the parent's children are not ours; close our copies of their pipes
    so that the parent closing its end still reaches them as end of input."""
    for child in list(_LIVE):
        child.stopped = True
        for stream in (child._stdin, child._stdout):
            try:
                stream.close()
            except OSError:
                pass
    _LIVE.clear()


os.register_at_fork(after_in_child=_forget_after_fork)
atexit.register(stop_all_children)


def exit_signal(returncode: int | None) -> str | None:
    """The name of the signal that killed a child (``"SIGKILL"``), or None."""
    if returncode is None or returncode >= 0:
        return None
    try:
        return signal.Signals(-returncode).name
    except ValueError:
        return "unknown signal"


def describe_exit(returncode: int | None) -> str:
    """A dead child's exit in words: its exit code, or the signal that killed it."""
    if returncode is None:
        return "stopped answering"
    name = exit_signal(returncode)
    if name is None:
        return f"exited unexpectedly (exit code {returncode})"
    return f"crashed (signal {-returncode}: {name})"


__all__ = ["ChildError", "ChildProgram", "child_streams", "describe_exit", "exit_signal", "read_frame",
           "stop_all_children", "write_frame"]
