"""ToolSQL: answer a question about a small company database with SQL tools.

Each episode writes a new SQLite database (real ``sqlite3``, a file in the env's own temporary
folder): ``departments``, ``employees`` and ``projects`` with generated rows, and asks a question
whose answer one query finds. Every action is one JSON tool call:

- ``{"name": "list_tables", "arguments": {}}``;
- ``{"name": "describe", "arguments": {"table": "employees"}}``: the columns and their types;
- ``{"name": "query", "arguments": {"sql": "SELECT ..."}}``: at most :data:`MAX_ROWS` rows shown;
- ``{"name": "answer", "arguments": {"value": ...}}``: ends the episode.

The reward is 1 for the right answer and 0 otherwise. Queries run on a connection opened
read-only (``mode=ro``, ``PRAGMA query_only``) whose authoriser admits only reading: ``SELECT``,
reading columns, a list of plain functions and recursive CTEs. Writing statements, ``ATTACH``,
``PRAGMA``, ``VACUUM INTO`` and every other action are refused, so nothing an agent sends can change
the database or reach another file. Refused and failing calls are invalid actions: they change
nothing and earn 0, and their message says why.

A query is held to limits that hold whatever it does:

- time: a watchdog thread interrupts it after :data:`TIME_LIMIT` seconds, at most
  :data:`WATCH_INTERVAL` later (``sqlite3_interrupt`` is checked at every row, where a progress
  handler would run only every N steps of SQLite's machine, each of which can be long);
- size: no value, row or statement may exceed :data:`MAX_LENGTH` bytes (``SQLITE_LIMIT_LENGTH``,
  ``SQLITE_LIMIT_SQL_LENGTH``), which also bounds the slowest single step (``trim`` and ``instr``
  take time quadratic in their arguments' length), and no result may have more than
  :data:`MAX_COLUMNS` columns (``SQLITE_LIMIT_COLUMN``), so the rows read into Python stay small;
- memory and disk: sorts and temporary tables stay in memory (``PRAGMA temp_store = MEMORY``, so no
  temporary file is ever written) under SQLite's hard heap limit of :data:`HEAP_LIMIT` bytes
  (``PRAGMA hard_heap_limit``). That limit is process-wide, and SQLite has no per-connection one:
  it caps all the SQLite connections of the process together (it can only be lowered, so a lower
  limit set before is kept). 64 MiB is far above what other SQLite users here take (the LLM
  cache's connections hold a page cache of at most 2 MiB each); what a process must not do is host
  ToolSQL next to a SQLite workload of its own that needs more, and for the instant a hostile query
  is at the limit, another thread's SQLite allocation can fail with "out of memory";
- output: the observation shows each value (and column name) on one line of printable ASCII, other
  characters escaped as Python's ``ascii()`` writes them (``\\u043a``), blobs as ``x'...'`` hex,
  cut at :data:`VALUE_CHARS` characters with a note, and at most :data:`RESULT_CHARS` characters of
  the result, saying so where it cuts.

``info["valid_actions"]`` is a menu of calls that change something now: ``list_tables`` until
the tables are listed, ``describe`` of each table not described yet, those of the solving query
and two like it with other values whose result has not been seen yet (each is run once at reset,
so the menu knows its result), and answers with the first value of each result seen (short
strings and numbers only), which end the episode. ``info["state"]["reference_call"]`` is the next
call of a solution.

>>> import gymnasium as gym, align_gym
>>> env = gym.make("Align/ToolSQL-v0")
>>> obs, info = env.reset(seed=0)
>>> print(obs.splitlines()[0])  # doctest: +ELLIPSIS
Question: ...
>>> obs, *_ = env.step('{"name": "list_tables", "arguments": {}}')
>>> print(obs.splitlines()[1])
Tables: departments, employees, projects.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
import tempfile
import threading
import time
import weakref
from pathlib import Path
from typing import Any

import numpy as np

from ..core import State
from ..text.core import Outcome, quote
from .calls import CallError, Tool, format_call
from .core import ToolEnv, plain

MAX_ROWS = 20
TIME_LIMIT = 0.5
#: The longest value, row (as SQLite stores it) or statement a query may make, in bytes: far above
#: what the questions need (the longest value is a name), low enough that the slowest single step
#: (``trim`` of a long text by a long character set) takes milliseconds.
MAX_LENGTH = 10_000
#: The most columns a result may have: a value per column reaches Python, outside SQLite's heap limit.
MAX_COLUMNS = 64
#: SQLite's hard heap limit, in bytes (process-wide: see the module docstring).
HEAP_LIMIT = 64 << 20
#: How often the watchdog looks for a query past its deadline (so a query stops at most this late),
#: and how long it goes on looking after the last query before it sleeps until the next.
WATCH_INTERVAL = TIME_LIMIT / 10
WATCH_IDLE = 10.0
#: The most characters an observation shows of one value (or column name), and of a whole result.
VALUE_CHARS = 200
RESULT_CHARS = 3000
#: The longest first value of a result that the menu offers as an answer (the answers are names
#: and numbers).
ANSWER_CHARS = 100
SCHEMA = {
    "departments": "CREATE TABLE departments (id INTEGER PRIMARY KEY, name TEXT, city TEXT)",
    "employees": "CREATE TABLE employees (id INTEGER PRIMARY KEY, name TEXT, department_id INTEGER, "
                 "salary INTEGER, hired INTEGER)",
    "projects": "CREATE TABLE projects (id INTEGER PRIMARY KEY, title TEXT, lead_id INTEGER, budget INTEGER)",
}
COLUMNS = {table: [tuple(part.split()[:2]) for part in ddl[ddl.index("(") + 1:-1].split(", ")]
           for table, ddl in SCHEMA.items()}
DEPARTMENTS = ("Sales", "Research", "Support", "Finance", "Legal", "Design", "Logistics", "Marketing")
CITIES = ("Lyon", "Oslo", "Porto", "Leeds", "Graz", "Turin")
FIRST = ("Ada", "Ben", "Chloe", "Dev", "Eva", "Femi", "Gus", "Hana", "Ivan", "Jun", "Kira", "Leo", "Mona", "Nils",
         "Omar", "Pia", "Quinn", "Rosa", "Sami", "Tara")
LAST = ("Moreau", "Berg", "Silva", "Walsh", "Huber", "Rossi", "Novak", "Sato", "Okafor", "Lind")
WORDS = ("Atlas", "Beacon", "Comet", "Delta", "Ember", "Falcon", "Garnet", "Harbor", "Iris", "Juniper")
_ALLOWED_FUNCTIONS = {"count", "sum", "avg", "min", "max", "total", "round", "abs", "lower", "upper", "length",
                      "substr", "coalesce", "ifnull", "nullif", "trim", "group_concat", "cast", "instr", "like"}
JOIN = "employees e JOIN departments d ON e.department_id = d.id"
# question template -> (the question, the SQL that answers it), filled with one value
QUESTIONS = {
    "count": ("How many employees work in the {} department?",
              "SELECT COUNT(*) FROM " + JOIN + " WHERE d.name = '{}'"),
    "max_salary": ("What is the highest salary of an employee whose department is in {}?",
                   "SELECT MAX(e.salary) FROM " + JOIN + " WHERE d.city = '{}'"),
    "top_department": ("Which department has the most employees hired after {}?",
                       "SELECT d.name FROM " + JOIN + " WHERE e.hired > {} GROUP BY d.name "
                       "ORDER BY COUNT(*) DESC LIMIT 1"),
    "budget": ("What is the total budget of the projects led by {}?",
               "SELECT SUM(p.budget) FROM projects p JOIN employees e ON p.lead_id = e.id WHERE e.name = '{}'"),
}
TOOLS = {
    "list_tables": Tool("List the tables of the company database."),
    "describe": Tool("Show a table's columns.", {"table": ("string", "the table's name")}),
    "query": Tool(f"Run one read-only SQL query and see up to {MAX_ROWS} rows of its result.",
                  {"sql": ("string", "a single SELECT statement")}),
    "answer": Tool("Give the final answer to the question; this ends the episode.",
                   {"value": ("string", "the answer: a name or a number")}),
}


def _authorise(action: int, arg1: Any, arg2: Any, database: Any, source: Any) -> int:
    """Admit reading only (sqlite3's authoriser: anything else is refused before it runs)."""
    if action in (sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_RECURSIVE):
        return sqlite3.SQLITE_OK
    if action == sqlite3.SQLITE_FUNCTION and str(arg2).lower() in _ALLOWED_FUNCTIONS:
        return sqlite3.SQLITE_OK
    return sqlite3.SQLITE_DENY


class _Watchdog:
    """Interrupts each armed connection once its deadline has passed: one daemon thread for the
    process, which looks every :data:`WATCH_INTERVAL` seconds while queries run and sleeps once
    none has run for :data:`WATCH_IDLE` seconds. Arming a query wakes nobody: a thread woken (or
    started) per query would cost more than the query."""

    def __init__(self) -> None:
        self._start()

    def _start(self) -> None:
        self._pid = os.getpid()
        self._lock = threading.Lock()  # held to change deadlines and to interrupt: never the wrong query
        self._deadlines: dict[sqlite3.Connection, float] = {}
        self._active = threading.Event()  # set while the thread looks
        self._last_armed = 0.0
        self._thread: threading.Thread | None = None

    def arm(self, connection: sqlite3.Connection, seconds: float) -> None:
        """Interrupt ``connection`` in ``seconds`` unless disarmed before."""
        if self._pid != os.getpid():  # a forked child has this object but not its thread
            self._start()
        with self._lock:
            self._last_armed = now = time.monotonic()
            self._deadlines[connection] = now + seconds
            if not self._active.is_set():
                self._active.set()
            if self._thread is None:
                self._thread = threading.Thread(target=self._watch, name="toolsql-watchdog", daemon=True)
                self._thread.start()

    def disarm(self, connection: sqlite3.Connection) -> None:
        with self._lock:
            self._deadlines.pop(connection, None)

    def _watch(self) -> None:
        while True:
            self._active.wait()
            time.sleep(WATCH_INTERVAL)
            with self._lock:
                now = time.monotonic()
                for connection, deadline in list(self._deadlines.items()):
                    if deadline <= now:
                        del self._deadlines[connection]
                        # a late interrupt is harmless: SQLite clears it when the next statement starts
                        try:
                            connection.interrupt()
                        except sqlite3.ProgrammingError:  # closed meanwhile by another thread
                            pass
                if not self._deadlines and now - self._last_armed > WATCH_IDLE:
                    self._active.clear()


_WATCHDOG = _Watchdog()


def _pick(rng: np.random.Generator, options: tuple[str, ...]) -> str:
    """What ``rng.choice(options)`` draws (the same numbers from ``rng``), without its conversion of
    the tuple to an array, which made writing a database 10x slower."""
    return options[rng.integers(len(options))]


def _same(value: Any, answer: Any) -> bool:
    try:
        return abs(float(value) - float(answer)) < 1e-6
    except (TypeError, ValueError, OverflowError):  # OverflowError: an integer past a float's range
        return str(value).strip().lower() == str(answer).strip().lower()


def _digest(columns: list[str], rows: list[tuple]) -> str:
    """A short hash of a result as shown (columns and the first MAX_ROWS rows)."""
    return hashlib.blake2b(repr((columns, rows)).encode(), digest_size=4).hexdigest()


def _fetch(cursor: sqlite3.Cursor) -> tuple[list[str], list[tuple], bool]:
    """Columns, the first MAX_ROWS rows, and whether there were more."""
    rows = cursor.fetchmany(MAX_ROWS + 1)
    return [d[0] for d in cursor.description or []], rows[:MAX_ROWS], len(rows) > MAX_ROWS


def show_value(value: Any) -> str:
    """A value as a result shows it: :func:`~align_gym.envs.tools.core.plain` text, a blob as
    ``x'...'`` hex, at most :data:`VALUE_CHARS` characters with a note past them.

    >>> print(show_value("ключ"), show_value(b"\\x00\\xff"), show_value(None))
    \\u043a\\u043b\\u044e\\u0447 x'00ff' NULL
    """
    if isinstance(value, bytes):
        text = f"x'{value[:VALUE_CHARS].hex()}'"
        return text if len(text) <= VALUE_CHARS else f"{text[:VALUE_CHARS]}...(truncated: {len(value):,} bytes)"
    return "NULL" if value is None else plain(str(value), VALUE_CHARS)


def show_result(columns: list[str], rows: list[tuple], more: bool) -> str:
    """A query's result as the observation shows it: a header of column names, one line per row,
    and notes where rows or characters are left out."""
    lines = [" | ".join(show_value(c) for c in columns)]
    lines += [" | ".join(show_value(v) for v in row) for row in rows] or ["(no rows)"]
    text = "\n".join(lines)
    if len(text) > RESULT_CHARS:
        text = f"{text[:RESULT_CHARS]}\n(result cut: {len(text):,} characters, the first {RESULT_CHARS:,} shown)"
    return text + (f"\n(more rows not shown: at most {MAX_ROWS})" if more else "")


def reference_potential(state: State) -> float:
    """Progress in [0, 1]: tables listed, the needed tables described, the answer seen, answered."""
    described = state["needed_described"] / max(state["needed_tables"], 1)
    return (float(state["listed"]) + described + float(state["answer_seen"]) + float(state["answered"])) / 4.0


def distance_potential(state: State) -> float:
    """Minus the calls a solution still needs, over the most it needs."""
    left = (not state["listed"]) + state["needed_tables"] - state["needed_described"] \
        + (not state["answer_seen"]) + (not state["answered"])
    return -left / (state["needed_tables"] + 3)


class ToolSQLEnv(ToolEnv):
    """A question about a generated SQLite database, answered with SQL tools; see the module docstring."""

    task = "Answer the question about the company database, using its SQL tools, then call answer."
    state_schema = {
        "question": "the question's template and value",
        "listed": "whether the tables were listed",
        "described": "the tables described, comma-separated",
        "results": "short hashes of the distinct query results seen, sorted",
        "needed_tables": "how many tables the solving query reads",
        "needed_described": "how many of those were described",
        "answer_seen": "whether a query result showed the answer",
        "reference_call": "the next call of a solution (JSON)",
        "answered": "whether a correct answer was given",
        "steps": "steps taken in this episode",
    }
    potentials = {"reference": reference_potential, "distance": distance_potential}
    tools = TOOLS

    @classmethod
    def task_of(cls, **_: Any) -> str:
        return "A question about a generated company database (SQLite), answered with list_tables, describe and query."

    def __init__(self, max_steps: int = 12, render_mode: str | None = None):
        super().__init__(max_steps, render_mode)
        self._folder = Path(tempfile.mkdtemp(prefix="align_toolsql_"))
        # removed with the env even if nobody calls close() (vector envs in scripts often don't)
        self._cleanup = weakref.finalize(self, shutil.rmtree, self._folder, True)
        self._connection: sqlite3.Connection | None = None
        self.path = self._folder / "company.sqlite"

    def __deepcopy__(self, memo: dict[int, Any]) -> Any:
        raise TypeError("ToolSQL holds an open database connection: it cannot be copied")

    # -- the database ---------------------------------------------------------------------------
    def _write_database(self, rng: np.random.Generator) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None
        self.path.unlink(missing_ok=True)
        writer = sqlite3.connect(self.path)
        # A scratch file, rewritten every episode and read only after the writer closes: no
        # rollback journal and no fsync (which made a reset wait on the disk, up to 0.1 s).
        writer.execute("PRAGMA journal_mode = OFF")
        writer.execute("PRAGMA synchronous = OFF")
        writer.executescript(";\n".join(SCHEMA.values()))
        departments = [DEPARTMENTS[i] for i in rng.permutation(len(DEPARTMENTS))[:int(rng.integers(4, 7))]]
        writer.executemany("INSERT INTO departments VALUES (?, ?, ?)",
                           [(i + 1, name, _pick(rng, CITIES)) for i, name in enumerate(departments)])
        names = list(dict.fromkeys(f"{_pick(rng, FIRST)} {_pick(rng, LAST)}" for _ in range(60)))[:int(rng.integers(20, 35))]
        writer.executemany("INSERT INTO employees VALUES (?, ?, ?, ?, ?)",
                           [(i + 1, name, int(rng.integers(1, len(departments) + 1)), int(rng.integers(30, 120)) * 1000,
                             int(rng.integers(2005, 2025))) for i, name in enumerate(names)])
        writer.executemany("INSERT INTO projects VALUES (?, ?, ?, ?)",
                           [(i + 1, f"{_pick(rng, WORDS)} {i + 1}", int(rng.integers(1, len(names) + 1)),
                             int(rng.integers(5, 500)) * 1000) for i in range(int(rng.integers(10, 20)))])
        writer.commit()
        self._values = {
            "count": departments,
            "max_salary": sorted({row[0] for row in writer.execute("SELECT city FROM departments")}),
            "top_department": [str(year) for year in range(2008, 2021)],
            "budget": sorted({row[0] for row in writer.execute(
                "SELECT e.name FROM projects p JOIN employees e ON p.lead_id = e.id")}),
        }
        self._writer = writer  # closed after the question is chosen

    def _open_read_only(self) -> sqlite3.Connection:
        # An env is used by one thread at a time, but not always the thread that opened it (a
        # server's worker pool resets it, another thread closes it): let any thread use it.
        connection = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, check_same_thread=False)
        # The limits of the module docstring, set before the authoriser (which refuses PRAGMA).
        connection.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, MAX_LENGTH)
        connection.setlimit(sqlite3.SQLITE_LIMIT_SQL_LENGTH, MAX_LENGTH)
        connection.setlimit(sqlite3.SQLITE_LIMIT_COLUMN, MAX_COLUMNS)
        connection.execute("PRAGMA temp_store = MEMORY")
        connection.execute(f"PRAGMA hard_heap_limit = {HEAP_LIMIT}")
        connection.execute("PRAGMA query_only = ON")
        connection.set_authorizer(_authorise)
        return connection

    def _run(self, sql: str) -> tuple[list[str], list[tuple], bool]:
        """Columns, up to MAX_ROWS rows, and whether there were more; CallError when refused or stopped."""
        cursor = self._connection.cursor()
        _WATCHDOG.arm(self._connection, TIME_LIMIT)
        try:
            cursor.execute(sql)
            return _fetch(cursor)
        except sqlite3.DatabaseError as error:
            text = str(error).rstrip(".")
            if "interrupted" in text:
                text = f"the query ran past {TIME_LIMIT} s and was stopped"
            elif "too big" in text or "too large" in text:
                text = f"a value, row or query went past {MAX_LENGTH:,} bytes, the most a query may make"
            elif "not authorized" in text or "prohibited" in text or "authorization denied" in text:
                text = "only reading queries are allowed (SELECT); this one was refused"
            raise CallError(f"SQL error: {plain(text, 300)}.") from None
        except MemoryError:  # SQLite's hard heap limit
            raise CallError(f"SQL error: the query needed more than {HEAP_LIMIT >> 20} MiB of memory "
                            "and was stopped.") from None
        except (sqlite3.Warning, ValueError, OverflowError) as error:  # e.g. two statements at once
            raise CallError(f"SQL error: {plain(str(error).rstrip('.'), 300)}.") from None
        finally:
            _WATCHDOG.disarm(self._connection)
            cursor.close()  # frees what the statement holds (a sort's rows) now, not when collected

    # -- the episode -----------------------------------------------------------------------------
    def _new_episode(self, rng: np.random.Generator) -> str:
        while True:
            self._write_database(rng)
            self.kind = str(rng.choice(sorted(QUESTIONS)))
            values = self._values[self.kind]
            picks = [values[i] for i in rng.permutation(len(values))[:3]]
            question, sql = QUESTIONS[self.kind]
            rows = self._writer.execute(sql.format(picks[0])).fetchall()
            unique = self.kind != "top_department" or not self._tied(sql, picks[0])
            if rows and rows[0][0] is not None and unique and len(picks) == 3:
                break
            self._writer.close()
        self.value, self.answer = picks[0], rows[0][0]
        self.question = question.format(picks[0])
        self.solving_sql = sql.format(picks[0])
        self.other_sql = [sql.format(v) for v in picks[1:]]
        # each menu query's result, so that the menu leaves off those whose result has been seen
        self._menu_results = {sql: _digest(*_fetch(self._writer.execute(sql))[:2])
                              for sql in sorted([self.solving_sql, *self.other_sql])}
        self._writer.close()
        self._connection = self._open_read_only()
        self.needed = [t for t in SCHEMA if f"{t} " in self.solving_sql + " "]
        self.listed, self.described, self.answered = False, set(), False
        self.results: dict[str, Any] = {}  # result hash -> first value shown
        self._event = "You read a new question."
        return "Use the tools to explore the database, then answer."

    def _tied(self, sql: str, value: str) -> bool:
        query = sql.format(value).replace("SELECT d.name", "SELECT d.name, COUNT(*)").replace("LIMIT 1", "LIMIT 2")
        counts = self._writer.execute(query).fetchall()
        return len(counts) > 1 and counts[0][1] == counts[1][1]

    def database_checksum(self) -> str:
        """SHA-256 of the database file (the tests check that no call changes it)."""
        return hashlib.sha256(self.path.read_bytes()).hexdigest()

    def _answer_seen(self) -> bool:
        return any(_same(value, self.answer) for value in self.results.values())

    def _reference_call(self) -> str:
        if not self.listed:
            return format_call("list_tables", {})
        for table in self.needed:
            if table not in self.described:
                return format_call("describe", {"table": table})
        if not self._answer_seen():
            return format_call("query", {"sql": self.solving_sql})
        return format_call("answer", {"value": self.answer})

    def valid_actions(self) -> list[str]:
        menu = [format_call("list_tables", {})] if not self.listed else []
        menu += [format_call("describe", {"table": t}) for t in SCHEMA if t not in self.described]
        menu += [format_call("query", {"sql": sql}) for sql, digest in self._menu_results.items()
                 if digest not in self.results]
        answers = dict.fromkeys(value for value in self.results.values() if isinstance(value, (str, int, float))
                                and not isinstance(value, bool) and len(str(value)) <= ANSWER_CHARS)
        menu += [format_call("answer", {"value": value}) for value in answers]
        return menu

    def symbolic_state(self) -> State:
        return {"question": f"{self.kind}:{self.value}", "listed": self.listed,
                "described": ", ".join(sorted(self.described)), "results": ", ".join(sorted(self.results)),
                "needed_tables": len(self.needed), "needed_described": len(self.described & set(self.needed)),
                "answer_seen": self._answer_seen(), "reference_call": self._reference_call(),
                "answered": self.answered}

    def _observe(self, message: str) -> str:
        return "\n".join([f"Question: {self.question}", message,
                          'Tools: list_tables {}, describe {"table"}, query {"sql"}, answer {"value"}; '
                          'call one as {"name": ..., "arguments": {...}}.'])

    def _call(self, name: str, arguments: dict[str, Any]) -> Outcome:
        if name == "list_tables":
            self.listed = True
            self._event = "You list the tables."
            return Outcome(f"Tables: {', '.join(SCHEMA)}.")
        if name == "describe":
            table = str(arguments["table"]).strip().lower()
            if table not in SCHEMA:
                raise CallError(f"No table {quote(table)}: the tables are {', '.join(SCHEMA)}.")
            self.described.add(table)
            self._event = f"You describe the {table} table."
            return Outcome(f"{table}: " + ", ".join(f"{c} {t}" for c, t in COLUMNS[table]) + ".")
        if name == "query":
            columns, rows, more = self._run(str(arguments["sql"]))
            self.results.setdefault(_digest(columns, rows), rows[0][0] if rows and rows[0] else None)
            self._event = f"Your query returns {len(rows)}{'+' if more else ''} row{'' if len(rows) == 1 else 's'}."
            return Outcome(show_result(columns, rows, more))
        return self._verdict(_same(arguments["value"], self.answer), arguments["value"], self.answer)

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None
        self._cleanup()
