"""On-disk cache of LLM calls: one SQLite file in WAL mode, safe across threads and processes.

Every client call goes through it (DESIGN.md, "LLM layer"). A row is keyed by :func:`cache_key`:
the sha256 of a canonical JSON of the backend, model, prompt template and its version, the
prompt (text or chat messages) and the sampling parameters. The file is a shareable artifact: a run
recorded in ``readwrite`` mode is reproduced exactly in ``replay`` mode, where a miss raises
:class:`CacheMiss` instead of calling a model.

Modes:

- ``"readwrite"``: hits are returned, misses are computed and stored (the default).
- ``"replay"``: hits are returned; a miss raises :class:`CacheMiss` naming the backend, model,
  template and a prompt excerpt; nothing is written. The file must exist.
- ``"readonly"``: hits are returned, misses computed but never stored; the file is opened
  read-only (SQLite may still create its ``-wal``/``-shm`` side files) and never created.
- ``"off"``: no file; every lookup misses and nothing is stored.

Exact replay. The cache returns what it stored: when two processes compute the same key at once,
the first writer's value is kept and *both* return it (:meth:`LLMCache.put` returns the stored
value). Deterministic calls (temperature 0, a given seed, scoring) are keyed by the call alone and
shared by every run. A sampling call (temperature > 0 and no seed) is a fresh draw each time, so its
key also holds the run id and its occurrence: the k-th identical sampling call of a run is
occurrence k. A run is one ``LLMCache`` instance with a ``run_id`` (given, else
``$ALIGN_GYM_RUN_ID``, which the bench sets for each cell from the cell's seed, else
``"default"``): repeated identical sampling calls in a run get distinct samples, two runs with
different ids get independent samples from one shared file, and replaying a run (same id, same
calls in the same order) returns its samples in the same order. The clients also derive the
backend's seed for occurrence k of a run from (run id, key, k), so even a fresh run with a given id
draws the same samples. Give each process of a multi-process run its own id.

Concurrency and durability: each process opens its own connections (a fork is detected by the pid
and the inherited connection is abandoned, never used), and each thread its own connection. Every
write is one ``BEGIN IMMEDIATE`` transaction, committed at once, with a 30 s busy timeout and
retries on ``database is locked``; rows are ``INSERT OR IGNORE`` so concurrent writers of one key
do not fail (the first value stays). In WAL mode with ``synchronous=NORMAL`` (the default) a
committed row survives the writer being killed (SIGKILL); pass ``synchronous="FULL"`` to also
survive power loss at the cost of an fsync per commit.

Values are stored as JSON (``allow_nan``: log-probabilities may be ``-inf``); tuples come back as
lists.

>>> import tempfile, os
>>> tmp = tempfile.TemporaryDirectory()
>>> cache = LLMCache(os.path.join(tmp.name, "calls.sqlite"))
>>> key = cache_key(backend="hf", model="smollm2-135m", template="rate_number",
...                 template_version=1, prompt="Rate it.", params={"max_tokens": 8, "temperature": 0.0})
>>> cache.get(key) is None
True
>>> cache.put(key, ["Rating: 7"])  # the key remembers the call's details; returns what is stored
['Rating: 7']
>>> cache.put(key, ["Rating: 2"])  # a key already stored keeps its value: the first writer wins
['Rating: 7']
>>> cache.get(key)
['Rating: 7']
>>> cache.cached_call(lambda: ["never called"], **key.meta)
['Rating: 7']
>>> (cache.hits, cache.misses, cache.writes)
(2, 1, 1)
>>> cache.close(); tmp.cleanup()
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "CACHE_ENV",
    "CACHE_MODE_ENV",
    "RUN_ENV",
    "MODES",
    "CacheKey",
    "CacheMiss",
    "LLMCache",
    "cache_key",
]

#: Environment variable: the default cache file.
CACHE_ENV = "ALIGN_GYM_CACHE"
#: Environment variable: the default mode of :meth:`LLMCache.default`.
CACHE_MODE_ENV = "ALIGN_GYM_CACHE_MODE"
#: Environment variable: the run id of caches made without one (the bench sets it per cell).
RUN_ENV = "ALIGN_GYM_RUN_ID"
MODES = ("readwrite", "replay", "readonly", "off")
SCHEMA_VERSION = 1
_META_FIELDS = ("backend", "model", "template", "template_version", "prompt", "params")
_COLUMNS = (
    "key", "backend", "model", "template", "template_version", "prompt", "params", "value",
    "created", "prompt_tokens", "completion_tokens",
)
_SCHEMA = """
CREATE TABLE IF NOT EXISTS calls (
    key TEXT PRIMARY KEY,
    backend TEXT NOT NULL,
    model TEXT NOT NULL,
    template TEXT NOT NULL,
    template_version TEXT NOT NULL,
    prompt TEXT NOT NULL,
    params TEXT NOT NULL,
    value TEXT NOT NULL,
    created REAL NOT NULL,
    prompt_tokens INTEGER NOT NULL DEFAULT 0,
    completion_tokens INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS calls_group ON calls (backend, model, template);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT OR IGNORE INTO meta VALUES ('schema_version', '1');
"""
# Connections inherited through fork() are parked here, never used nor closed (closing them in the
# child could disturb the parent's locks).
_ABANDONED: list[sqlite3.Connection] = []


class CacheMiss(LookupError):
    """A replay-mode lookup found no row: the run asked for a call the recorded run never made."""


# --------------------------------------------------------------------------------------------
# keys


def _canonical(value: Any, where: str) -> Any:
    """JSON-ready copy: mapping keys sorted later by dumps, integral floats as ints, no None params."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{where}: {value} is not a finite number")
        return int(value) if value.is_integer() else value
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise TypeError(f"{where}: keys must be strings, got {k!r}")
            out[k] = _canonical(v, f"{where}.{k}")
        return out
    if isinstance(value, (list, tuple)):
        return [_canonical(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        return _canonical(value.item(), where)
    raise TypeError(f"{where}: {type(value).__name__} is not JSON-serialisable")


def _check_prompt(prompt: Any) -> str | list[dict[str, str]]:
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, (list, tuple)) and all(isinstance(m, Mapping) for m in prompt):
        messages = []
        for i, m in enumerate(prompt):
            if set(m) - {"role", "content"} or not isinstance(m.get("role"), str) or not isinstance(
                m.get("content"), str
            ):
                raise ValueError(f"prompt message {i} must be {{'role': str, 'content': str}}, got {dict(m)!r}")
            messages.append({"role": m["role"], "content": m["content"]})
        return messages
    raise TypeError(f"prompt must be a string or a list of chat messages, got {type(prompt).__name__}")


def _dumps(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


class CacheKey(str):
    """A cache key: the hex sha256 string, also carrying the call's details in ``meta``.

    It is a plain ``str`` for every purpose (comparison, hashing, storage); ``meta`` lets
    :meth:`LLMCache.put` take the details from the key and :class:`CacheMiss` name them.
    """

    meta: dict[str, Any]

    def __new__(cls, digest: str, meta: dict[str, Any]) -> CacheKey:
        obj = super().__new__(cls, digest)
        obj.meta = meta
        return obj

    def __reduce__(self) -> tuple[Any, ...]:
        return (CacheKey, (str(self), self.meta))


def cache_key(
    *,
    backend: str,
    model: str,
    template: str,
    template_version: int | str,
    prompt: str | Sequence[Mapping[str, str]],
    params: Mapping[str, Any],
) -> CacheKey:
    """The sha256 (hex) of a canonical JSON of one call's identity.

    ``prompt`` is a string or chat messages ``[{"role", "content"}, ...]``; ``params`` are the
    sampling parameters (``max_tokens, temperature, n, stop, seed``; for scoring, the
    continuation). Canonical: mapping keys sorted, so dict order never matters; ``1.0 == 1``;
    params whose value is ``None`` are dropped (``stop=None`` is the same call as no ``stop``);
    ``template_version`` is compared as a string (``3 == "3"``). The result is a :class:`CacheKey`
    (a ``str``) whose ``meta`` holds the normalised arguments.

    >>> a = cache_key(backend="hf", model="m", template="t", template_version=1, prompt="p",
    ...               params={"temperature": 0.0, "max_tokens": 8})
    >>> b = cache_key(backend="hf", model="m", template="t", template_version="1", prompt="p",
    ...               params={"max_tokens": 8, "temperature": 0, "stop": None})
    >>> a == b, len(a)
    (True, 64)
    """
    for name, value in (("backend", backend), ("model", model), ("template", template)):
        if not isinstance(value, str) or not value:
            raise ValueError(f"{name} must be a non-empty string, got {value!r}")
    if isinstance(template_version, bool) or not isinstance(template_version, (int, str)):
        raise TypeError(f"template_version must be an int or a str, got {template_version!r}")
    if not isinstance(params, Mapping):
        raise TypeError(f"params must be a mapping, got {type(params).__name__}")
    meta = {
        "backend": backend,
        "model": model,
        "template": template,
        "template_version": str(template_version),
        "prompt": _check_prompt(prompt),
        "params": {k: v for k, v in _canonical(params, "params").items() if v is not None},
    }
    digest = hashlib.sha256(_dumps(meta).encode("utf-8")).hexdigest()
    return CacheKey(digest, meta)


def _prompt_excerpt(prompt: Any, limit: int = 160) -> str:
    if isinstance(prompt, list):
        users = [m.get("content", "") for m in prompt if isinstance(m, Mapping) and m.get("role") == "user"]
        text = users[-1] if users else " ".join(str(m.get("content", "")) for m in prompt if isinstance(m, Mapping))
    else:
        text = str(prompt)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --------------------------------------------------------------------------------------------
# the cache


@dataclass
class _Conn:
    pid: int
    conn: sqlite3.Connection | None


class LLMCache:
    """An LLM call cache in one SQLite file; see the module docstring for modes and guarantees.

    ``path``: the file (its folder is created in readwrite mode). ``timeout``: seconds a write
    waits for the lock, also the total budget of the retries on ``database is locked``.
    ``synchronous``: SQLite's ``NORMAL`` (survives a killed process) or ``FULL`` (also power loss).
    ``run_id``: the run whose sampling calls this instance records or replays (see the module
    docstring, "Exact replay").

    An instance can be shared by threads and sent to other processes (it pickles as its settings;
    the copy counts its sampling calls afresh).
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None,
        mode: str = "readwrite",
        *,
        timeout: float = 30.0,
        synchronous: str = "NORMAL",
        run_id: str | None = None,
    ):
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if synchronous.upper() not in ("NORMAL", "FULL", "EXTRA"):
            raise ValueError(f"synchronous must be NORMAL, FULL or EXTRA, got {synchronous!r}")
        if path is None and mode != "off":
            raise ValueError(f"mode {mode!r} needs a path")
        self.path = Path(path).expanduser() if path is not None else None
        self.mode = mode
        self.timeout = float(timeout)
        self.synchronous = synchronous.upper()
        self._lock = threading.Lock()
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._pid = os.getpid()
        self.hits = 0
        self.misses = 0
        self.writes = 0
        self.run_id = str(run_id or os.environ.get(RUN_ENV, "").strip() or "default")
        self._occurrences: dict[str, int] = {}
        if mode == "replay" and not self.path.is_file():  # type: ignore[union-attr]
            raise FileNotFoundError(f"replay mode needs an existing cache file; {self.path} does not exist")
        if mode == "readwrite":
            self.path.parent.mkdir(parents=True, exist_ok=True)  # type: ignore[union-attr]
            self._connection()  # create the file and schema now, so errors show at once

    # ---- construction -------------------------------------------------------------------

    @classmethod
    def default_path(cls) -> Path:
        """``$ALIGN_GYM_CACHE``, else ``~/.cache/align_gym/llm_cache.sqlite``."""
        env = os.environ.get(CACHE_ENV, "").strip()
        return Path(env).expanduser() if env else Path.home() / ".cache" / "align_gym" / "llm_cache.sqlite"

    @classmethod
    def default(cls, mode: str | None = None, **kwargs: Any) -> LLMCache:
        """The cache at :meth:`default_path`; ``mode`` defaults to ``$ALIGN_GYM_CACHE_MODE`` or readwrite."""
        mode = mode or os.environ.get(CACHE_MODE_ENV, "").strip() or "readwrite"
        return cls(cls.default_path(), mode, **kwargs)

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path, "mode": self.mode, "timeout": self.timeout, "synchronous": self.synchronous,
                "run_id": self.run_id}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(  # type: ignore[misc]
            state["path"], state["mode"], timeout=state["timeout"], synchronous=state["synchronous"],
            run_id=state.get("run_id"),
        )

    def next_occurrence(self, call: str) -> int:
        """How many times this run has made the sampling call ``call`` (a key of the call without
        run or occurrence) before now, counting this one in: 0 the first time."""
        with self._lock:
            k = self._occurrences.get(call, 0)
            self._occurrences[call] = k + 1
        return k

    def __repr__(self) -> str:
        return f"LLMCache({str(self.path)!r}, mode={self.mode!r})"

    def __enter__(self) -> LLMCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- connections --------------------------------------------------------------------

    def _connection(self) -> sqlite3.Connection | None:
        """This thread's connection in this process (None: mode off, or a readonly file that is absent)."""
        if self.mode == "off":
            return None
        pid = os.getpid()
        if pid != self._pid:  # forked: abandon every inherited connection
            with self._lock:
                if pid != self._pid:
                    _ABANDONED.extend(self._all)
                    self._all = []
                    self._local = threading.local()
                    self._pid = pid
                    self.hits = self.misses = self.writes = 0
        slot: _Conn | None = getattr(self._local, "slot", None)
        if slot is not None and slot.pid == pid and slot.conn is not None:
            return slot.conn
        conn = self._open()
        if conn is not None:
            self._local.slot = _Conn(pid, conn)
            with self._lock:
                self._all.append(conn)
        return conn

    def _open(self) -> sqlite3.Connection | None:
        assert self.path is not None
        if self.mode in ("readonly", "replay"):
            if not self.path.is_file():
                return None
            uri = f"{self.path.resolve().as_uri()}?mode=ro"
            conn = sqlite3.connect(uri, uri=True, timeout=self.timeout, isolation_level=None, check_same_thread=True)
            conn.execute(f"PRAGMA busy_timeout = {int(self.timeout * 1000)}")
            conn.execute("PRAGMA query_only = ON")
            return conn
        conn = sqlite3.connect(str(self.path), timeout=self.timeout, isolation_level=None, check_same_thread=True)
        conn.execute(f"PRAGMA busy_timeout = {int(self.timeout * 1000)}")
        self._retry(lambda: self._setup(conn))
        return conn

    def _setup(self, conn: sqlite3.Connection) -> None:
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise sqlite3.OperationalError(f"could not switch {self.path} to WAL mode (got {mode})")
        conn.execute(f"PRAGMA synchronous = {self.synchronous}")
        exists = conn.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='calls'").fetchone()
        if not exists:
            conn.execute("BEGIN IMMEDIATE")
            try:
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        conn.execute(statement)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    def _retry(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn``, retrying with jittered backoff while SQLite says locked or busy."""
        deadline = time.monotonic() + self.timeout
        delay = 0.005
        while True:
            try:
                return fn()
            except sqlite3.OperationalError as err:
                msg = str(err).lower()
                if ("locked" not in msg and "busy" not in msg) or time.monotonic() > deadline:
                    raise
                time.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, 0.5)

    def close(self) -> None:
        """Close this process's connections (they reopen on the next use)."""
        with self._lock:
            conns, self._all = self._all, []
            self._local = threading.local()
        if os.getpid() != self._pid:
            _ABANDONED.extend(conns)
            return
        for conn in conns:
            try:
                conn.close()
            except sqlite3.ProgrammingError:  # pragma: no cover - closed from another thread
                pass

    # ---- reads --------------------------------------------------------------------------

    def _count(self, hits: int = 0, misses: int = 0, writes: int = 0) -> None:
        with self._lock:
            self.hits += hits
            self.misses += misses
            self.writes += writes

    def _miss_error(self, keys: Sequence[str]) -> CacheMiss:
        key = keys[0]
        meta = getattr(key, "meta", None)
        more = f" (and {len(keys) - 1} more missing keys)" if len(keys) > 1 else ""
        if meta:
            detail = (
                f"backend={meta['backend']!r}, model={meta['model']!r}, "
                f"template={meta['template']!r} version {meta['template_version']!r}, "
                f"params={_dumps(meta['params'])}, prompt {_prompt_excerpt(meta['prompt'])!r}"
            )
        else:
            detail = "no call details came with this key (use cache_key() to build keys)"
        return CacheMiss(
            f"replay mode: {self.path} has no row for key {key[:16]}...: {detail}{more}. "
            "The run asks for a call the recorded run did not make."
        )

    def get(self, key: str) -> Any | None:
        """The stored value for ``key``, or ``None`` on a miss (replay mode: :class:`CacheMiss`)."""
        return self.get_many([key]).get(key)

    def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        """``{key: value}`` for the keys found (replay mode: any miss raises :class:`CacheMiss`)."""
        keys = list(dict.fromkeys(keys))
        found: dict[str, Any] = {}
        conn = self._connection()
        if conn is not None and keys:
            by_str = {str(k): k for k in keys}
            plain = list(by_str)
            for start in range(0, len(plain), 500):
                chunk = plain[start : start + 500]
                marks = ",".join("?" * len(chunk))
                rows = self._retry(
                    lambda c=chunk, m=marks: conn.execute(
                        f"SELECT key, value FROM calls WHERE key IN ({m})", c
                    ).fetchall()
                )
                for k, v in rows:
                    found[by_str[k]] = json.loads(v)
        missing = [k for k in keys if k not in found]
        self._count(hits=len(found), misses=len(missing))
        if missing and self.mode == "replay":
            raise self._miss_error(missing)
        return found

    def __contains__(self, key: object) -> bool:
        conn = self._connection()
        if conn is None or not isinstance(key, str):
            return False
        return self._retry(lambda: conn.execute("SELECT 1 FROM calls WHERE key = ?", (str(key),)).fetchone()) is not None

    def __len__(self) -> int:
        conn = self._connection()
        if conn is None:
            return 0
        return int(self._retry(lambda: conn.execute("SELECT COUNT(*) FROM calls").fetchone()[0]))

    # ---- writes -------------------------------------------------------------------------

    def _row(self, key: str, value: Any, fields: Mapping[str, Any]) -> tuple[Any, ...]:
        meta = getattr(key, "meta", None) or {}
        args = {name: fields.get(name, meta.get(name)) for name in _META_FIELDS}
        absent = [name for name, v in args.items() if v is None]
        if absent:
            raise ValueError(f"put needs {', '.join(absent)} (or a key made by cache_key())")
        expected = cache_key(**args)
        if expected != key:
            raise ValueError(
                f"key {str(key)[:16]}... does not match cache_key() of the given call details "
                f"({str(expected)[:16]}...): a row must be findable by its own details"
            )
        tokens = (int(fields.get("prompt_tokens", 0) or 0), int(fields.get("completion_tokens", 0) or 0))
        return (
            str(key),
            expected.meta["backend"],
            expected.meta["model"],
            expected.meta["template"],
            expected.meta["template_version"],
            _dumps(expected.meta["prompt"]),
            _dumps(expected.meta["params"]),
            json.dumps(value, ensure_ascii=False, allow_nan=True),
            time.time(),
            *tokens,
        )

    def _write(self, rows: list[tuple[Any, ...]]) -> dict[str, Any]:
        """Insert rows in one immediate transaction and read back what each key now holds."""
        conn = self._connection()
        if conn is None or not rows:
            return {row[0]: json.loads(row[7]) for row in rows}
        marks = ",".join("?" * len(_COLUMNS))
        sql = f"INSERT OR IGNORE INTO calls ({','.join(_COLUMNS)}) VALUES ({marks})"
        keys = list(dict.fromkeys(row[0] for row in rows))

        def transaction() -> tuple[int, dict[str, Any]]:
            conn.execute("BEGIN IMMEDIATE")
            try:
                before = conn.total_changes
                conn.executemany(sql, rows)
                added = conn.total_changes - before
                stored = {}
                for start in range(0, len(keys), 500):
                    chunk = keys[start : start + 500]
                    query = f"SELECT key, value FROM calls WHERE key IN ({','.join('?' * len(chunk))})"
                    stored.update({k: json.loads(v) for k, v in conn.execute(query, chunk).fetchall()})
                conn.execute("COMMIT")
                return added, stored
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

        added, stored = self._retry(transaction)
        self._count(writes=added)
        return stored

    def put(
        self,
        key: str,
        value: Any,
        *,
        backend: str | None = None,
        model: str | None = None,
        template: str | None = None,
        template_version: int | str | None = None,
        prompt: str | Sequence[Mapping[str, str]] | None = None,
        params: Mapping[str, Any] | None = None,
        prompt_tokens: int = 0,
        completion_tokens: int = 0,
    ) -> Any:
        """Store one call's value, committed before returning, and return the value stored for
        ``key``: a key already stored keeps its value (the first writer wins, for every caller).
        Outside readwrite mode nothing is written and ``value`` comes back.

        The call details may be omitted when ``key`` came from :func:`cache_key` (they travel in
        ``key.meta``); given details must hash to ``key``.
        """
        return self.put_many(
            [
                {
                    "key": key, "value": value, "backend": backend, "model": model, "template": template,
                    "template_version": template_version, "prompt": prompt, "params": params,
                    "prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                }
            ]
        )[str(key)]

    def put_many(self, rows: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
        """Store many rows (dicts with :meth:`put`'s arguments) in one transaction; returns
        ``{key: value stored}`` (the earlier value where a key was already there)."""
        rows = list(rows)
        for row in rows:
            if "key" not in row or "value" not in row:
                raise ValueError("every row needs 'key' and 'value'")
        if self.mode != "readwrite":
            return {str(row["key"]): row["value"] for row in rows}
        prepared = []
        for row in rows:
            fields = {k: v for k, v in row.items() if v is not None and k not in ("key", "value")}
            prepared.append(self._row(row["key"], row["value"], fields))
        return self._write(prepared)

    def cached_call(
        self,
        fn: Callable[[], Any],
        *,
        backend: str,
        model: str,
        template: str,
        template_version: int | str,
        prompt: str | Sequence[Mapping[str, str]],
        params: Mapping[str, Any],
    ) -> Any:
        """The cached value for this call, else ``fn()`` (stored in readwrite mode).

        In replay mode a miss raises :class:`CacheMiss` and ``fn`` is never called.
        """
        key = cache_key(
            backend=backend, model=model, template=template, template_version=template_version,
            prompt=prompt, params=params,
        )
        found = self.get_many([key])
        if key in found:
            return found[key]
        return self.put(key, fn())

    def clear(self) -> int:
        """Delete every row (readwrite mode only); returns the rows deleted."""
        self._writable("clear")
        conn = self._connection()
        assert conn is not None

        def transaction() -> int:
            conn.execute("BEGIN IMMEDIATE")
            try:
                n = conn.execute("DELETE FROM calls").rowcount
                conn.execute("COMMIT")
                return n
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

        return int(self._retry(transaction))

    def _writable(self, what: str) -> None:
        if self.mode != "readwrite":
            raise PermissionError(f"{what} needs mode 'readwrite'; this cache is {self.mode!r}")

    # ---- statistics and artifacts -------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """In-process counters plus what the file holds.

        Keys: ``hits, misses, writes`` (this process, this instance), ``hit_rate``, ``rows``,
        ``file_bytes`` (database plus its WAL), ``by_group`` (list of ``{backend, model, template,
        rows}``), ``path``, ``mode``.
        """
        with self._lock:
            hits, misses, writes = self.hits, self.misses, self.writes
        out: dict[str, Any] = {
            "hits": hits,
            "misses": misses,
            "writes": writes,
            "hit_rate": hits / (hits + misses) if hits + misses else 0.0,
            "rows": 0,
            "file_bytes": 0,
            "by_group": [],
            "path": str(self.path) if self.path else None,
            "mode": self.mode,
        }
        conn = self._connection()
        if conn is None:
            return out
        out["rows"] = len(self)
        groups = self._retry(
            lambda: conn.execute(
                "SELECT backend, model, template, COUNT(*) FROM calls GROUP BY backend, model, template "
                "ORDER BY backend, model, template"
            ).fetchall()
        )
        out["by_group"] = [{"backend": b, "model": m, "template": t, "rows": n} for b, m, t, n in groups]
        assert self.path is not None
        for suffix in ("", "-wal"):
            p = Path(str(self.path) + suffix)
            if p.exists():
                out["file_bytes"] += p.stat().st_size
        return out

    def export(self, path: str | os.PathLike[str]) -> int:
        """Write every row as JSON lines (every column; prompt, params and value as JSON values).

        Returns the rows written. Works in every mode but ``off`` (which has no rows).
        """
        conn = self._connection()
        n = 0
        with open(path, "w", encoding="utf-8") as fh:
            if conn is None:
                return 0
            rows = self._retry(
                lambda: conn.execute(f"SELECT {','.join(_COLUMNS)} FROM calls ORDER BY created, key").fetchall()
            )
            for row in rows:
                record = dict(zip(_COLUMNS, row))
                for col in ("prompt", "params", "value"):
                    record[col] = json.loads(record[col])
                fh.write(json.dumps(record, ensure_ascii=False, allow_nan=True) + "\n")
                n += 1
        return n

    def import_(self, path: str | os.PathLike[str], *, verify: bool = True) -> int:
        """Add the rows of a JSONL file written by :meth:`export`; returns rows added.

        Keys already present are left as they are (duplicates ignored). With ``verify``, each row's
        key must equal :func:`cache_key` of its details (a ``ValueError`` names the line).
        Everything is added in one transaction: a bad line adds nothing.
        """
        self._writable("import_")
        rows = []
        with open(path, encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                    missing = [c for c in _COLUMNS if c not in rec]
                    if missing:
                        raise ValueError(f"missing column(s) {missing}")
                    if verify:
                        key = cache_key(**{f: rec[f] for f in _META_FIELDS})
                        if key != rec["key"]:
                            raise ValueError(f"key {rec['key'][:16]}... does not match its details")
                    rows.append(
                        (
                            rec["key"], rec["backend"], rec["model"], rec["template"], str(rec["template_version"]),
                            _dumps(_check_prompt(rec["prompt"])), _dumps(rec["params"]),
                            json.dumps(rec["value"], ensure_ascii=False, allow_nan=True),
                            float(rec["created"]), int(rec["prompt_tokens"]), int(rec["completion_tokens"]),
                        )
                    )
                except (ValueError, TypeError, KeyError) as err:
                    raise ValueError(f"{path}, line {lineno}: {err}") from None
        before = self.writes
        self._write(rows)
        return self.writes - before

    def integrity_check(self) -> str:
        """SQLite's ``PRAGMA integrity_check`` result (``"ok"`` for a sound file)."""
        conn = self._connection()
        if conn is None:
            return "ok"
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])
