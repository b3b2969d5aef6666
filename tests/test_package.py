"""The built wheel carries the four sub-packages under align_gym and imports on its own."""

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_contains_every_subpackage(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp_path), str(ROOT)],
                   check=True, capture_output=True)
    wheel = next(tmp_path.glob("align_gym-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for module in ("align_gym/__init__.py", "align_gym/cli.py", "align_gym/py.typed",
                   "align_gym/envs/keydoor.py", "align_gym/wrappers/potential.py",
                   "align_gym/agents/sb3.py", "align_gym/llm_rewards/__init__.py",
                   "align_gym/llm_rewards/clients/base.py", "align_gym/llm_rewards/prompts/motif_pair.toml"):
        assert module in names, f"{module} missing from {wheel.name}"
    assert not any(name.startswith(("tests/", "envs/", "wrappers/")) for name in names)

    # the wheel alone, outside the source tree, gives a working import
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--target", str(target), str(wheel)],
                   check=True, capture_output=True)
    code = ("import align_gym, align_gym.wrappers, gymnasium as gym; "
            "print(align_gym.__file__); print(gym.make('Align/KeyDoor-5x5-v0').unwrapped.size)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=tmp_path, env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"})
    assert str(target) in out.stdout and out.stdout.strip().endswith("5")
