"""Reward search: from hand-written candidates through the real CLI, reflection statistics, and
an end-to-end run with the embedded model."""

import json
import subprocess
import sys

import pytest

from align_gym.llm_rewards import LLMPotential
from align_gym.llm_rewards.codegen import check_code
from align_gym.llm_rewards.reward_code import SPECS
from align_gym.llm_rewards.reward_search import (
    RewardSearch,
    SearchConfig,
    record_inputs,
    reflection,
    training_stats,
)

GOOD = '''def potential(state):
    # staged progress: the key, the door, then closeness to the goal
    if not state["has_key"]:
        return -0.02 * (abs(state["agent_x"] - state["key_x"]) + abs(state["agent_y"] - state["key_y"]))
    if not state["door_open"]:
        return 0.3 - 0.02 * (abs(state["agent_x"] - state["door_x"]) + abs(state["agent_y"] - state["door_y"]))
    return 0.6 - 0.02 * (abs(state["agent_x"] - state["goal_x"]) + abs(state["agent_y"] - state["goal_y"]))
'''
CANDIDATES = {
    "good.py": GOOD,
    "constant.py": "def potential(state):\n    return 1.0\n",
    "broken.py": "def potential(state)\n    return state['has_key']\n",
    "hostile.py": "import os\n\ndef potential(state):\n    os.system('rm -rf /')\n    return 0.0\n",
}


def test_a_candidates_search_picks_the_good_one_and_records_why_the_others_lost(tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    for name, source in CANDIDATES.items():
        (folder / name).write_text(source)
    out = tmp_path / "search"
    # Run from tmp_path with relative paths: the cells' shaping specs, and so their random streams
    # (derived from the spec), are then the same in every run of this test.
    done = subprocess.run([sys.executable, "-m", "align_gym.cli", "reward-search", "--env", "Align/KeyDoor-5x5-v0",
                           "--candidates", "mine", "--steps", "20000", "--search-seeds", "0,1",
                           "--final-steps", "4096", "--fresh-seeds", "100", "--out", "search"],
                          capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "reward-search: best: iter_1/good.py" in done.stdout
    summary = json.loads((out / "summary.json").read_text())
    rows = {row["file"]: row for row in summary["candidates"]}
    assert summary["best"] == "iter_1/good.py" and summary["llm"] is None
    assert rows["iter_1/good.py"]["status"] == "valid" and rows["iter_1/good.py"]["reason"] == ""
    assert rows["iter_1/constant.py"]["status"] == "valid"
    assert rows["iter_1/constant.py"]["score"] < rows["iter_1/good.py"]["score"]
    assert "lower task return than the best" in rows["iter_1/constant.py"]["reason"]
    assert rows["iter_1/broken.py"]["status"] == "rejected" and "syntax error" in rows["iter_1/broken.py"]["reason"]
    assert "importing 'os' is not allowed" in rows["iter_1/hostile.py"]["reason"]
    assert (out / "final.py").read_text().strip() == GOOD.strip()
    assert LLMPotential.load(out)({"has_key": True, "door_open": True, "agent_x": 1, "agent_y": 1,
                                   "goal_x": 1, "goal_y": 1}) == pytest.approx(0.6)
    assert not list(out.glob("iter_1/prompt.json"))  # no LLM was asked
    final = (out / "final" / "summary.md").read_text()  # the comparison on a fresh seed
    assert "| none |" in final and "pbrs(potential=reference)" in final and "iter_1/good.py" in final
    seeds = {json.loads(line).get("seed") for line in (out / "final" / "results.jsonl").read_text().splitlines()}
    assert seeds <= {100, None}


def test_reflection_reports_each_series_with_max_mean_min_and_correlation():
    rows = [[{"step": i * 100, "return_mean": 0.1 * i, "success_rate": 0.1 * i, "train_true_return": 0.1 * i,
              "train_term.llm_potential.key": 0.05 * i, "train_term.llm_potential.door": 0.3} for i in range(12)]]
    stats = training_stats(rows)
    assert stats["correlation llm_potential.key"] == pytest.approx(1.0)
    assert stats["correlation llm_potential.door"] is None  # constant: undefined
    text = reflection("def potential(state):\n    return 0.0", stats)
    assert "def potential(state)" in text and "- task return: [0.0," in text and "max 1.100, mean" in text
    assert "its correlation with the task return: 1.00" in text and "undefined (constant)" in text
    assert "Advice:" in text
    assert training_stats([[{"status": "failed"}]]) == {}


def test_the_loop_runs_end_to_end_with_the_embedded_model(tmp_path, embedded):
    config = SearchConfig("Align/KeyDoor-5x5-v0", iterations=1, samples=2, repairs=1, max_tokens=300, steps=2048,
                          search_seeds=[0], final_steps=2048, fresh_seeds=[100], jobs=2)
    summary = RewardSearch(config, tmp_path, client=embedded, progress=False).run()
    assert len(summary["candidates"]) == 2
    for row in summary["candidates"]:
        assert row["status"] in ("valid", "rejected") and (row["status"] == "valid" or row["reason"])
        assert (tmp_path / row["file"]).exists()  # the code, or the record of a candidate without any
        assert (tmp_path / row["file"]).with_suffix(".json").exists()
    assert (tmp_path / "iter_1" / "prompt.json").exists()
    # A usable result either way: the best valid candidate, or a clear record that none was valid.
    assert (summary["best"] is not None) == any(row["status"] == "valid" for row in summary["candidates"])


# Staged progress, but NaN once KeyDoor's door is open.
DOOR_NAN = '''def potential(state):
    if state["door_open"]:
        return float("nan")
    return 0.1 * state["has_key"]
'''


def test_the_check_sees_final_states_so_a_potential_nan_once_the_door_is_open_is_rejected(tmp_path):
    # 256 random-policy states on the 8x8 KeyDoor never see the door open: the check alone passes it
    states = record_inputs("Align/KeyDoor-v0", "potential", 256)
    assert not any(state["door_open"] for state in states)
    check_code(DOOR_NAN, SPECS["potential"], states)
    # episode ends (terminated: at the goal, behind the open door; truncated: out of time) are checked too
    with_ends = record_inputs("Align/KeyDoor-v0", "potential", 256, final_states=8)
    assert with_ends[:256] == states and len(with_ends) == 256 + 8
    ends = with_ends[256:]
    assert any(s["agent_x"] == s["goal_x"] and s["agent_y"] == s["goal_y"] for s in ends)  # terminated
    assert any(s["steps"] == 640 for s in ends)  # truncated: 10 * 8 * 8 steps
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "door_nan.py").write_text(DOOR_NAN)
    config = SearchConfig("Align/KeyDoor-v0", candidates=str(folder), steps=2048, search_seeds=[0],
                          fresh_seeds=[100], jobs=1)
    summary = RewardSearch(config, tmp_path / "search", progress=False).run()
    [row] = summary["candidates"]
    assert row["status"] == "rejected" and summary["best"] is None
    assert "not finite" in row["reason"] and "'door_open': True" in row["reason"]
    assert not (tmp_path / "search" / "iter_1" / "cells").exists()  # rejected before any training


def test_a_candidate_that_goes_nonfinite_in_training_is_rejected_with_the_reason_and_the_search_ends(tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "door_nan.py").write_text(DOOR_NAN)
    # without final states and with few states the check passes it; training then meets the open door
    config = SearchConfig("Align/KeyDoor-5x5-v0", candidates=str(folder), states=16, final_states=0, steps=2048,
                          search_seeds=[0], fresh_seeds=[100], jobs=1)
    summary = RewardSearch(config, tmp_path / "search", progress=False).run()
    [row] = summary["candidates"]
    assert row["status"] == "rejected" and row["score"] is None and summary["best"] is None
    reason = row["reason"]
    assert reason.startswith("training met a non-finite potential:") and "\n" not in reason
    assert "door_nan.py" in reason and "returned nan" in reason and "'door_open': True" in reason
    assert json.loads((tmp_path / "search" / "iter_1" / "door_nan.json").read_text())["reason"] == reason
