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
the database or reach another file. A query stops after :data:`TIME_LIMIT` seconds. Refused and
failing calls are invalid actions: they change nothing and earn 0.

``info["valid_actions"]`` is a menu: ``list_tables``, ``describe`` of each table, the solving query
and two like it with other values, and answers with the first value of each result seen.
``info["state"]["reference_call"]`` is the next call of a solution.

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
import shutil
import sqlite3
import tempfile
import time
import weakref
from pathlib import Path
from typing import Any

import numpy as np

from ..core import State
from ..text.core import Outcome
from .calls import CallError, Tool, format_call
from .core import ToolEnv

MAX_ROWS = 20
TIME_LIMIT = 0.5
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


def _same(value: Any, answer: Any) -> bool:
    try:
        return abs(float(value) - float(answer)) < 1e-6
    except (TypeError, ValueError):
        return str(value).strip().lower() == str(answer).strip().lower()


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
        writer.executescript(";\n".join(SCHEMA.values()))
        departments = [DEPARTMENTS[i] for i in rng.permutation(len(DEPARTMENTS))[:int(rng.integers(4, 7))]]
        writer.executemany("INSERT INTO departments VALUES (?, ?, ?)",
                           [(i + 1, name, str(rng.choice(CITIES))) for i, name in enumerate(departments)])
        names = list(dict.fromkeys(f"{rng.choice(FIRST)} {rng.choice(LAST)}" for _ in range(60)))[:int(rng.integers(20, 35))]
        writer.executemany("INSERT INTO employees VALUES (?, ?, ?, ?, ?)",
                           [(i + 1, name, int(rng.integers(1, len(departments) + 1)), int(rng.integers(30, 120)) * 1000,
                             int(rng.integers(2005, 2025))) for i, name in enumerate(names)])
        writer.executemany("INSERT INTO projects VALUES (?, ?, ?, ?)",
                           [(i + 1, f"{rng.choice(WORDS)} {i + 1}", int(rng.integers(1, len(names) + 1)),
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
        connection.execute("PRAGMA query_only = ON")
        connection.set_authorizer(_authorise)
        return connection

    def _run(self, sql: str) -> tuple[list[str], list[tuple], bool]:
        """Columns, up to MAX_ROWS rows, and whether there were more; CallError when refused."""
        deadline = time.monotonic() + TIME_LIMIT
        self._connection.set_progress_handler(lambda: int(time.monotonic() > deadline), 1000)
        try:
            cursor = self._connection.execute(sql)
            rows = cursor.fetchmany(MAX_ROWS + 1)
        except sqlite3.DatabaseError as error:
            text = str(error).rstrip(".")
            if "interrupted" in text:
                text = f"the query ran past {TIME_LIMIT} s and was stopped"
            elif "not authorized" in text or "prohibited" in text or "authorization denied" in text:
                text = "only reading queries are allowed (SELECT); this one was refused"
            raise CallError(f"SQL error: {text}.") from None
        except (sqlite3.Warning, ValueError, OverflowError) as error:  # e.g. two statements at once
            raise CallError(f"SQL error: {str(error).rstrip('.')}.") from None
        columns = [d[0] for d in cursor.description or []]
        return columns, rows[:MAX_ROWS], len(rows) > MAX_ROWS

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
        self._writer.close()
        self._connection = self._open_read_only()
        self.value, self.answer = picks[0], rows[0][0]
        self.question = question.format(picks[0])
        self.solving_sql = sql.format(picks[0])
        self.other_sql = [sql.format(v) for v in picks[1:]]
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
        menu += [format_call("query", {"sql": sql}) for sql in sorted([self.solving_sql, *self.other_sql])]
        answers = dict.fromkeys(value for value in self.results.values() if value is not None)
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
                raise CallError(f"No table {table[:40]!r}: the tables are {', '.join(SCHEMA)}.")
            self.described.add(table)
            self._event = f"You describe the {table} table."
            return Outcome(f"{table}: " + ", ".join(f"{c} {t}" for c, t in COLUMNS[table]) + ".")
        if name == "query":
            columns, rows, more = self._run(str(arguments["sql"]))
            digest = hashlib.blake2b(repr((columns, rows)).encode(), digest_size=4).hexdigest()
            self.results.setdefault(digest, rows[0][0] if rows and rows[0] else None)
            self._event = f"Your query returns {len(rows)}{'+' if more else ''} row{'' if len(rows) == 1 else 's'}."
            shown = "\n".join(" | ".join(str(v) for v in row) for row in rows) or "(no rows)"
            extra = f"\n(more rows not shown: at most {MAX_ROWS})" if more else ""
            return Outcome(f"{' | '.join(columns)}\n{shown}{extra}")
        return self._verdict(_same(arguments["value"], self.answer), arguments["value"], self.answer)

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None
        self._cleanup()
