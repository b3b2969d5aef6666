"""Real servers for tests: a free port on 127.0.0.1 and an `align-gym` command started as a user would."""

from __future__ import annotations

import socket
import subprocess
import sys
import tempfile
import time

import httpx
import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_cli_server(arguments: list[str], ready_url: str, timeout: float = 180) -> subprocess.Popen:
    """Run ``align-gym ARGUMENTS`` until ``ready_url`` answers 200; fail the test with its output if it exits.

    Its output goes to a file, never a pipe: a pipe nobody reads fills up and stalls the server."""
    log = tempfile.TemporaryFile(mode="w+")
    process = subprocess.Popen([sys.executable, "-m", "align_gym.cli", *arguments], stdout=log, stderr=subprocess.STDOUT,
                               text=True)
    process.log = log  # type: ignore[attr-defined]
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if httpx.get(ready_url, timeout=1).status_code == 200:
                return process
        except httpx.TransportError:
            time.sleep(0.3)
        if process.poll() is not None:
            pytest.fail(f"align-gym {' '.join(arguments)} exited: {output(process)}")
    process.kill()
    pytest.fail(f"align-gym {' '.join(arguments)} did not answer {ready_url} within {timeout} s")


def output(process: subprocess.Popen) -> str:
    """What the server has printed so far."""
    process.log.seek(0)  # type: ignore[attr-defined]
    return process.log.read()  # type: ignore[attr-defined]


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
