"""README.md keeps its two set-up commands at the top, and CI runs the test one word for word."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def readme_commands() -> list[str]:
    return re.findall(r"```bash\n(.+?)\n```", (ROOT / "README.md").read_text())


def test_readme_opens_with_the_demo_and_the_test_commands():
    demo, tests = readme_commands()[:2]
    assert demo.endswith("align-gym demo") and demo.startswith("pip install torch==2.13.0")
    assert "pytest" in tests and tests.startswith("pip install torch==2.13.0")


def test_ci_runs_the_readme_test_command_word_for_word():
    ci_lines = (ROOT / ".ci" / "run").read_text().splitlines()
    assert readme_commands()[1] in ci_lines
