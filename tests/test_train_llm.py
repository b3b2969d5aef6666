"""`align-gym train-llm`: progress, log, checkpoint after every update, and resume."""

import json

import pytest
import torch

from align_gym.cli import main


def log_rows(folder):
    return [json.loads(line) for line in (folder / "log.jsonl").read_text().splitlines()]


def test_action_ppo_writes_its_log_and_checkpoint_and_resumes_where_it_stopped(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["train-llm", "--env", "Align/TextQuest-easy-v0", "--model", "tiny", "--algo", "action-ppo", "--lr", "1e-3",
            "--out", str(out)]
    assert main([*args, "--steps", "128"]) == 0
    assert [row["step"] for row in log_rows(out)] == [128.0]
    first = torch.load(out / "checkpoint.pt", weights_only=False)
    assert first["progress"]["taken"] == 128 and "last" in capsys.readouterr().out
    assert main([*args, "--steps", "256", "--resume"]) == 0  # goes on from step 128, not from 0
    rows = log_rows(out)
    assert [row["step"] for row in rows] == [128.0, 256.0]
    second = torch.load(out / "checkpoint.pt", weights_only=False)
    assert second["progress"]["taken"] == 256
    assert len(second["progress"]["episodes"]) > len(first["progress"]["episodes"])
    changed = [not torch.equal(first["policy"][k], second["policy"][k]) for k in first["policy"]]
    assert any(changed) and not any(k.startswith("reference.") for k in second["policy"])


def test_token_ppo_runs_from_the_command_line_and_bad_settings_are_refused(tmp_path):
    out = tmp_path / "tokens"
    assert main(["train-llm", "--env", "Align/ToolCalc-v0", "--model", "tiny", "--algo", "token-ppo", "--steps", "4",
                 "--placement", "uniform", "--out", str(out)]) == 0
    assert log_rows(out)[-1]["turn"] == 4.0
    with pytest.raises(SystemExit, match="not a setting of action-ppo"):
        main(["train-llm", "--env", "Align/TextQuest-easy-v0", "--algo", "action-ppo", "--placement", "uniform",
              "--out", str(tmp_path / "x")])
    with pytest.raises(SystemExit, match="FileNotFoundError: .*no model folder"):
        main(["train-llm", "--env", "Align/TextQuest-easy-v0", "--model", str(tmp_path / "missing"), "--steps", "4",
              "--out", str(tmp_path / "y")])
