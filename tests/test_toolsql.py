"""ToolSQL: every question answerable through the menu, a database nothing can change, limits on
time, memory, disk and output that hold whatever a query does, a parser that never raises, and a
menu of calls that each change something."""

import json
import os
import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest

import align_gym  # noqa: F401
from align_gym.envs.text.core import CHARSET, MAX_CHARS, state_hash
from align_gym.envs.tools.calls import format_call
from align_gym.envs.tools.toolsql import ANSWER_CHARS, MAX_ROWS, SCHEMA, TIME_LIMIT


@pytest.fixture
def env():
    env = gym.make("Align/ToolSQL-v0").unwrapped
    yield env
    env.close()


def query(sql):
    return format_call("query", {"sql": sql})


def test_following_the_menu_answers_every_question_for_seeds_0_to_99(env):
    kinds = set()
    for seed in range(100):
        _, info = env.reset(seed=seed)
        kinds.add(info["state"]["question"].split(":")[0])
        for _ in range(env.max_steps):
            call = info["state"]["reference_call"]
            assert call in info["valid_actions"]
            _, reward, terminated, _, info = env.step(call)
            if terminated:
                break
        assert (reward, info["success"]) == (1.0, True), seed
    assert kinds == {"count", "max_salary", "top_department", "budget"}


@pytest.mark.parametrize("sql", [
    "DROP TABLE employees", "DELETE FROM employees", "UPDATE employees SET salary = 0",
    "INSERT INTO departments VALUES (99, 'x', 'y')", "CREATE TABLE t (x)", "ALTER TABLE projects ADD COLUMN y",
    "ATTACH DATABASE '{tmp}/stolen.db' AS s", "PRAGMA writable_schema = ON", "PRAGMA query_only = OFF",
    "VACUUM INTO '{tmp}/copy.db'", "SELECT 1; DROP TABLE projects", "REPLACE INTO departments VALUES (1, 'a', 'b')",
    "SELECT load_extension('libx')", "CREATE TEMP TABLE t AS SELECT * FROM employees",
])
def test_writing_and_escaping_queries_are_refused_and_the_file_is_untouched(env, tmp_path, sql):
    _, info = env.reset(seed=1)
    before = env.path.read_bytes()
    *_, after = env.step(query(sql.format(tmp=tmp_path)))
    assert not after["action_valid"] and after["invalid_action"].startswith("SQL error")
    assert after["state_hash"] == info["state_hash"]
    assert env.path.read_bytes() == before and os.listdir(tmp_path) == []
    *_, info = env.step(query("SELECT COUNT(*) FROM projects"))  # the connection still reads
    assert info["action_valid"]


def test_limits_on_time_and_rows(env):
    env.reset(seed=2)
    *_, info = env.step(query("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT COUNT(*) FROM c"))
    assert "was stopped" in info["invalid_action"]
    obs, *_ = env.step(query("SELECT * FROM employees"))
    assert obs.count("\n") < MAX_ROWS + 5 and "more rows not shown" in obs


def test_ten_thousand_random_strings_and_calls_never_raise_nor_change_anything_when_refused(env):
    _, info = env.reset(seed=3)
    checksum = env.database_checksum()
    rng = np.random.default_rng(0)
    chars = np.array(list(CHARSET))
    words = ["SELECT", "*", "FROM", "employees", "WHERE", "DROP", "'", ";", "(", ")", "name", "=", "1", "--", "x"]
    for i in range(10_000):
        kind = i % 4
        if kind == 0:
            command = "".join(rng.choice(chars, size=int(rng.integers(0, 60))))
        elif kind == 1:
            command = query(" ".join(rng.choice(words, size=int(rng.integers(1, 9)))))
        elif kind == 2:
            command = json.dumps({"name": "describe", "arguments": {"table": str(rng.choice(words))}})
        else:
            value = [None, "Lyon", [1], {"a": 1}, True, 3.5, "1e999"][i % 7]
            command = json.dumps({"name": str(rng.choice(["answer", "query", "list_tables"])), "arguments": {"value": value}})
        before = info["state_hash"]
        _, reward, terminated, truncated, info = env.step(command)
        if not info["action_valid"]:
            assert info["state_hash"] == before and reward == 0.0 and info["invalid_action"]
        if terminated or truncated:
            assert env.database_checksum() == checksum
            _, info = env.reset(seed=3)  # the same database again
    assert env.database_checksum() == checksum


def test_close_removes_the_database_folder():
    env = gym.make("Align/ToolSQL-v0").unwrapped
    env.reset(seed=0)
    folder = env.path.parent
    env.close()
    assert not folder.exists()


# Before the limits, these ran up to 15 s past the time limit, took up to 3 GB or spilled up to
# 134 MB into SQLite's temporary files: a string doubled with ||, a sort of a 5-way cross join, a
# count over 10^9 rows, a sort of 40,000 rows of 8 KB (which now meets the heap limit first), and
# rows of 1,900 columns of 8 KB (which Python reads outside SQLite's heap).
HOSTILE_QUERIES = [
    "WITH RECURSIVE r(s, n) AS (SELECT 'x', 0 UNION ALL SELECT s || s, n + 1 FROM r WHERE n < 40) "
    "SELECT length(s) FROM r ORDER BY n DESC LIMIT 1",
    "SELECT a.name || b.name || c.name AS k FROM employees a, employees b, employees c, employees d, employees e "
    "ORDER BY k",
    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c LIMIT 1000000000) SELECT COUNT(*) FROM c",
    "WITH RECURSIVE r(s) AS (SELECT 'ab' UNION ALL SELECT s || s FROM r WHERE length(s) < 8192) "
    "SELECT s || a.name || b.name || c.name AS k FROM (SELECT max(s) AS s FROM r), employees a, employees b, "
    "employees c, departments d ORDER BY k DESC",
    "WITH RECURSIVE r(s) AS (SELECT 'ab' UNION ALL SELECT s || s FROM r WHERE length(s) < 8192), t(s) AS "
    "(SELECT max(s) FROM r), n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n LIMIT 25) SELECT "
    + ", ".join(["s"] * 1900) + " FROM t, n",
]
# Run in a fresh process whose temporary folder is empty: its peak memory, what it writes and what
# its temporary folder holds are the queries' own.
HOSTILE_SCRIPT = r"""
import json, os, sys, time
import gymnasium as gym
import align_gym
from align_gym.envs.tools.calls import format_call

def rss_mb():
    return int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

def peak_mb():
    # VmHWM, the peak of this process's own memory: ru_maxrss would keep the parent's peak, which
    # Linux carries across fork and exec (a test suite that has loaded models is gigabytes).
    status = dict(line.split(":", 1) for line in open("/proc/self/status").read().splitlines())
    return int(status["VmHWM"].split()[0]) / 1024

def written():
    return int(dict(line.split(": ") for line in open("/proc/self/io").read().splitlines())["wchar"])

env = gym.make("Align/ToolSQL-v0").unwrapped
env.reset(seed=0)
env.step(format_call("query", {"sql": "SELECT COUNT(*) FROM employees"}))
rss, before = rss_mb(), written()
steps = []
for sql in json.loads(sys.argv[1]):
    start = time.monotonic()
    obs, _, _, _, info = env.step(format_call("query", {"sql": sql}))
    seconds = time.monotonic() - start
    _, _, _, _, after = env.step(format_call("query", {"sql": "SELECT COUNT(*) FROM projects"}))
    steps.append({"seconds": seconds, "valid": info["action_valid"], "message": info.get("invalid_action", ""),
                  "obs_chars": len(obs), "steps_on": after["action_valid"]})
report = {"steps": steps, "written_mb": (written() - before) / 2**20,
          "peak_mb": peak_mb() - rss,
          "files": sorted(os.path.relpath(os.path.join(d, f), os.environ["TMPDIR"]) for d, _, fs in os.walk(os.environ["TMPDIR"]) for f in fs)}
print(json.dumps(report))
"""


@pytest.mark.skipif(not os.path.exists("/proc/self/io"), reason="reads the process's I/O counters from /proc")
def test_hostile_queries_stop_within_twice_the_limit_under_200_mb_without_temp_files(tmp_path):
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    done = subprocess.run([sys.executable, "-c", HOSTILE_SCRIPT, json.dumps(HOSTILE_QUERIES)], capture_output=True,
                          text=True, timeout=300, env={**os.environ, "TMPDIR": str(tmp), "SQLITE_TMPDIR": str(tmp)})
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout)
    for sql, step in zip(HOSTILE_QUERIES, report["steps"]):
        assert step["seconds"] < 2 * TIME_LIMIT, (sql, step)
        assert not step["valid"] and step["message"].startswith("SQL error: ") and step["obs_chars"] < 1000, step
        assert step["steps_on"], sql  # the env reads on
    assert report["peak_mb"] < 200, report
    assert report["written_mb"] < 1, report  # no temporary file: SQLite's spills are writes
    assert [os.path.basename(f) for f in report["files"]] == ["company.sqlite"], report["files"]


def test_results_show_each_value_on_one_ascii_line_cut_with_a_note(env):
    env.reset(seed=0)
    doubled = "WITH RECURSIVE r(s) AS (SELECT 'xy' UNION ALL SELECT s || s FROM r WHERE length(s) < 4096) "
    cases = {
        "SELECT 'ключ' AS \"имя\"": ["\\u0438\\u043c\\u044f\n\\u043a\\u043b\\u044e\\u0447\n"],
        "SELECT cast(x'610062' AS text), cast(x'610a62' AS text), x'00ff'": ["a\\x00b | a\\nb | x'00ff'"],
        doubled + "SELECT max(s) FROM r": ["xy" * 100 + "...(truncated: 4,096 characters)"],
        "SELECT cast(group_concat(name) AS blob) FROM employees": ["...(truncated: "],
        doubled + "SELECT substr(max(s), 1, 1000), e.* FROM r, employees e GROUP BY e.id": [
            "(result cut: ", "characters, the first 3,000 shown)", "(more rows not shown"],
    }
    for sql, shown in cases.items():
        obs, _, _, _, info = env.step(query(sql))
        assert info["action_valid"], info.get("invalid_action")
        assert env.observation_space.contains(obs) and len(obs) < MAX_CHARS
        assert obs.splitlines()[-1].startswith("Tools: ")  # nothing cut but what the result says it cut
        assert all(part in obs for part in shown), (sql, obs[-500:])
        assert all(len(line) < 250 for line in obs.splitlines()[1:-1] if " | " not in line)
        answers = [json.loads(a)["arguments"]["value"] for a in info["valid_actions"] if a.startswith('{"name": "answer"')]
        assert all(len(str(value)) <= ANSWER_CHARS for value in answers)  # nor a blob: the menu is JSON
        env._steps = 0
    *_, info = env.step(query("SELECT ключ FROM employees"))  # an error that echoes the query
    assert "no such column: \\u043a\\u043b\\u044e\\u0447" in info["invalid_action"]
    assert env.observation_space.contains(info["invalid_action"])


@pytest.mark.parametrize("command", [
    '{"name": "answer", "arguments": {"value": ' + "1" * 400 + "}}",
    '{"name": "answer", "arguments": {"value": ' + "9" * 5000 + "}}", "[" * 10_000,
    '{"name": "query", "arguments": {"sql": ' + "[" * 10_000 + "}}", query("SELECT 1\x00"), query("SELECT '\udcff'"),
    format_call("describe", {"table": "ключ" * 1000}), query("SELECT " + "9" * 5000),
], ids=["400 digits", "5000 digits", "10000 deep", "deep sql", "NUL", "lone surrogate", "long table", "long number"])
def test_hostile_calls_are_invalid_actions_or_steps_with_messages(env, command):
    _, info = env.reset(seed=1)
    obs, reward, terminated, _, after = env.step(command)
    assert env.observation_space.contains(obs)
    if not after["action_valid"]:
        assert after["state_hash"] == info["state_hash"] and not terminated and reward == 0.0
        assert env.observation_space.contains(after["invalid_action"]) and after["invalid_action"] in obs


def test_every_listed_call_changes_the_state_or_ends_the_episode_and_no_other_menu_call_does(env):
    """Over 150 random states (random walks over the menu), each listed call changes the state or
    ends the episode, and each call of the finite menu (list_tables, describe, the three menu
    queries) that is not listed changes nothing: a query already run, or one whose result was seen,
    is left off. ToolSQL holds a connection and cannot be copied: each check replays the walk on a
    second env (a reset with the same seed writes the same database)."""
    replay = gym.make("Align/ToolSQL-v0").unwrapped
    rng = np.random.default_rng(0)

    def changes(seed, prefix, action, before):
        replay.reset(seed=seed)
        for taken in prefix:
            replay.step(taken)
        _, _, terminated, truncated, after = replay.step(action)
        assert after["action_valid"], after["invalid_action"]
        return terminated or truncated or after["state_hash"] != before

    states = seed = 0
    while states < 150:
        _, info = env.reset(seed=seed)
        finite = [format_call("list_tables", {})] + [format_call("describe", {"table": t}) for t in SCHEMA] \
            + [query(sql) for sql in [env.solving_sql, *env.other_sql]]
        prefix, ended = [], False
        while not ended:
            states += 1
            before = state_hash(env.state_dict())
            for action in info["valid_actions"] + [a for a in finite if a not in info["valid_actions"]]:
                listed = action in info["valid_actions"]
                assert changes(seed, prefix, action, before) == listed, (seed, prefix, action, listed)
            action = info["valid_actions"][int(rng.integers(len(info["valid_actions"])))]
            _, _, terminated, truncated, info = env.step(action)
            prefix.append(action)
            ended = terminated or truncated
        seed += 1
    replay.close()
