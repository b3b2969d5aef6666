"""LaRe's synthesis with the embedded SmolLM2-135M on both credit tasks: 5 samples at temperature
1.0, one merge at 0.3 with up to 5 repairs, then the candidates in order. Writes, per env,
``lare_embedded/<env>/synthesis.json`` (and ``latent.py`` when a function passed) with every
refusal's reason. The LLM's answers are kept in ``lare_embedded/cache.sqlite``: a rerun replays
them exactly."""

import json
from pathlib import Path

import gymnasium as gym

import align_gym  # noqa: F401
from align_gym.llm_rewards.cache import LLMCache
from align_gym.llm_rewards.clients import get_client
from align_gym.llm_rewards.lare import LatentRejected, synthesize_latent, transition_inputs

OUT = Path(__file__).parent / "lare_embedded"
OUT.mkdir(exist_ok=True)
client = get_client("hf:default", cache=LLMCache(OUT / "cache.sqlite", run_id="lare-embedded"))
for env_id in ("Align/KeyDoorSubgoals-Episodic-v0", "Align/Pendulum-Episodic-v0"):
    folder = OUT / env_id.split("/")[1]
    inputs = transition_inputs(env_id, 512)
    try:
        synthesis = synthesize_latent(client, gym.make(env_id), inputs)
        synthesis.save(folder)
        print(f"{env_id}: {synthesis.origin} kept, {synthesis.dimension} factors")
    except LatentRejected as error:
        folder.mkdir(exist_ok=True)
        (folder / "synthesis.json").write_text(json.dumps({"source": None, "record": error.record}, indent=1))
        print(f"{env_id}: nothing usable ({len(error.record)} functions refused)")
        for entry in error.record:
            print(f"  {entry['label']}: {entry['reason']}")
