"""ToolSQL: every question answerable through the menu, a database nothing can change, a parser
that never raises."""

import json
import os

import gymnasium as gym
import numpy as np
import pytest

import align_gym  # noqa: F401
from align_gym.envs.text.core import CHARSET
from align_gym.envs.tools.calls import format_call
from align_gym.envs.tools.toolsql import MAX_ROWS


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
