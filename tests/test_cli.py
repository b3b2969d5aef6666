"""The ``align-gym`` console script, run as a user would."""

import subprocess

import pytest


def run(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(["align-gym", *args], capture_output=True, text=True, timeout=timeout, check=True)


def test_list_prints_every_env_and_shaping():
    out = run("list").stdout
    assert "Align/KeyDoor-8x8-v0" in out and "Align/DeepSea-v0" in out
    shapings = run("list", "--shaping").stdout
    assert "pbrs" in shapings and "invariant" in shapings


@pytest.mark.parametrize("command", [[], ["list"], ["demo"], ["bench"], ["report"], ["serve-llm"], ["serve-env"], ["serve-web"], ["reward-search"], ["llm", "cache"]])
def test_help_on_every_command(command):
    assert "usage: align-gym" in run(*command, "--help").stdout


def test_a_tiny_demo_writes_its_table_and_plot(tmp_path):
    out = run("demo", "--steps", "2048", "--seeds", "1", "--jobs", "2", "--out", str(tmp_path)).stdout
    assert "| none |" in out and "| pbrs(potential=reference) |" in out
    assert (tmp_path / "curves_Align_KeyDoor-8x8-v0.png").stat().st_size > 1000
    assert "steps to 80% success" in (tmp_path / "summary.md").read_text()


def test_llm_cache_stats_export_import_on_a_real_file(tmp_path):
    from align_gym.llm_rewards.cache import LLMCache, cache_key

    source = tmp_path / "a.sqlite"
    cache = LLMCache(source)
    for i in range(3):
        fields = {"backend": "hf", "model": "m", "template": "t", "template_version": 1, "prompt": f"p{i}", "params": {}}
        cache.put(cache_key(**fields), [f"answer {i}"], **fields)
    cache.close()
    assert '"rows": 3' in run("llm", "cache", "stats", "--path", str(source)).stdout
    run("llm", "cache", "export", str(tmp_path / "rows.jsonl"), "--path", str(source))
    out = run("llm", "cache", "import", str(tmp_path / "rows.jsonl"), "--path", str(tmp_path / "b.sqlite")).stdout
    assert "imported 3 new rows" in out
    assert len(LLMCache(tmp_path / "b.sqlite")) == 3
