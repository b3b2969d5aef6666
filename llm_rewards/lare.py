"""LaRe: LLM-written latent rewards for credit assignment (Qu et al. 2025, "Latent Reward:
LLM-Empowered Credit Assignment in Episodic Reinforcement Learning").

The language model describes a step by a few latent factors; a small decoder turns them into the
step's reward, trained so that an episode's rewards add up to its return (RRD's objective). As in
the paper:

- **synthesis**: the prompt (``lare_latent``) gives the task and the meaning of each state field,
  with rules (only the given fields, as few factors as will do, guarded divisions, a list of
  factors out) and asks for an analysis, then the function. ``samples`` = 5 answers at temperature
  1.0; then (``lare_merge``, temperature 0.3) one function that merges and improves the factors of
  all five (the paper's self-verification);
- **pre-verification**: the function must run in the sandbox on states collected beforehand (a
  random policy's) and return finite values of one fixed dimension; a failure is fed back with its
  reason for up to ``repairs`` = 5 repairs. If the merged function still fails, the candidates are
  tried in order; every refusal and its reason is recorded (:class:`LatentSynthesis`);
- **decoder**: an MLP ``d -> 256 -> 256 -> 1`` over the factors (``d`` = their number), Adam at
  3e-4, trained with RRD's unbiased loss; off-policy, minibatches are relabelled by the decoder
  with one decoder step per critic step; on-policy, the rollout is relabelled before its
  advantages (:mod:`align_gym.wrappers.credit`).

Adapted: the function reads Align's symbolic state, ``latent_factors(state, next_state)``, the
states before and after the step (the paper's reads the observation vector, whose fields the
prompt names); it is written in a fenced Python block after the analysis, not as a JSON field;
the paper's environment-specific prompt examples are left out. ``code=FILE.py`` skips the LLM and
uses a given function (checked the same way): how a synthesis is replayed without the model, and
how hand-written factors are compared.

All LLM calls go through the cache, so a run replays exactly; the code runs only in the sandbox.

>>> import gymnasium as gym, align_gym
>>> from pathlib import Path; import tempfile
>>> code = Path(tempfile.mkdtemp()) / "latent.py"
>>> _ = code.write_text("def latent_factors(state, next_state):\\n"
...                     "    return [float(next_state['has_key']) - float(state['has_key'])]\\n")
>>> env = gym.make("Align/KeyDoorSubgoals-Episodic-v0")
>>> module = make_lare(env, gamma=0.99, code=str(code), states=64)
>>> module.name, module.method.feature_size
('lare', 1)
>>> module.close()
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..wrappers.core import TransitionBatch
from ..wrappers.credit import Redistribution
from ..wrappers.rrd import RRD
from .codegen import CALLER, BatchMemo, CodeRejected, CodeSpec, check_code, write_code
from .parsing import ParseError, parse_python_block

SPEC = CodeSpec("latent_factors", 2, vector=True)
ANSWER_FORMAT = "one ```python fenced block that defines latent_factors(state, next_state)"


class LatentRejected(ValueError):
    """No function the LLM wrote could be used; ``record`` holds each one's reason."""

    def __init__(self, record: list[dict[str, Any]]):
        self.record = record
        reasons = "; ".join(f"{r['label']}: {r['reason']}" for r in record)
        super().__init__(f"LaRe found no usable latent function ({reasons})")


@dataclass
class LatentSynthesis:
    """The function LaRe keeps (``source``, from ``origin``: ``merged`` or ``candidate_<i>``) and
    the record of every function it was offered: label, status, reason, answers."""

    source: str
    origin: str
    dimension: int
    record: list[dict[str, Any]] = field(default_factory=list)

    def save(self, folder: str | Path) -> Path:
        """Write ``latent.py`` (usable as ``lare(code=...)``) and ``synthesis.json`` into ``folder``."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "latent.py").write_text(self.source + "\n")
        (folder / "synthesis.json").write_text(json.dumps(asdict(self), indent=1))
        return folder / "latent.py"


def transition_inputs(env_id: str, count: int, seed: int = 0) -> list[list[dict[str, Any]]]:
    """``count`` (state, next state) pairs of a random policy on ``env_id``: the inputs the latent
    function is verified on."""
    from .reward_search import record_inputs

    return [[state, next_state] for state, _, next_state in record_inputs(env_id, "reward", count, seed)]


def latent_prompt(env: Any, example_state: dict[str, Any] | None = None) -> list[dict[str, str]]:
    """The ``lare_latent`` chat prompt for ``env`` (anything with ``task`` and ``state_schema``)."""
    from .prompts import load_template
    from .reward_code import abstraction

    base = getattr(env, "unwrapped", env)
    if not getattr(base, "state_schema", None):
        raise ValueError("LaRe's factors read info['state']: this env has no state_schema")
    example = json.dumps(example_state, sort_keys=True) if example_state else "(not given)"
    return load_template("lare_latent").render_chat(task=base.task, abstraction=abstraction(base.state_schema, example_state),
                                                    example_state=example)


def synthesize_latent(client: Any, env: Any, inputs: list[Any], *, samples: int = 5, repairs: int = 5,
                      temperature: float = 1.0, merge_temperature: float = 0.3, max_tokens: int = 600) -> LatentSynthesis:
    """LaRe's synthesis and pre-verification (see the module docstring); :class:`LatentRejected`
    if nothing usable comes of it."""
    from .clients import generate_from_template
    from .prompts import load_template
    from .reward_code import abstraction

    base = getattr(env, "unwrapped", env)
    template = load_template("lare_latent")
    answers = [a[0] for a in generate_from_template(client, [latent_prompt(env, inputs[0][0])] * samples, template.key,
                                                    max_tokens=max_tokens, temperature=temperature)]
    record: list[dict[str, Any]] = []
    candidates: list[tuple[str, str]] = []
    for index, answer in enumerate(answers, 1):
        try:
            candidates.append((f"candidate_{index}", parse_python_block(answer, require_function=SPEC.name)))
        except ParseError as error:
            record.append({"label": f"candidate_{index}", "status": "rejected", "reason": error.reason, "answers": [answer]})
    if candidates:
        merge = load_template("lare_merge")
        listing = "\n\n".join(f"Candidate {i}:\n```python\n{source}\n```" for i, (_, source) in enumerate(candidates, 1))
        prompt = merge.render_chat(task=base.task, abstraction=abstraction(base.state_schema, inputs[0][0]), candidates=listing)
        [merged] = write_code(client, prompt, SPEC, inputs, samples=1, repairs=repairs, temperature=merge_temperature,
                              max_tokens=max_tokens, template_key=merge.key, answer_format=ANSWER_FORMAT)
        record.append({"label": "merged", "status": merged.status, "reason": merged.reason, "answers": merged.answers})
        if merged.checked is not None:
            return LatentSynthesis(merged.checked.source, "merged", len(merged.checked.values[0]), record)
    for label, source in candidates:  # the merged function failed: the candidates, in order
        try:
            checked = check_code(source, SPEC, inputs)
        except CodeRejected as error:
            record.append({"label": label, "status": "rejected", "reason": error.reason, "answers": [source]})
            continue
        record.append({"label": label, "status": "valid", "reason": "", "answers": [source]})
        return LatentSynthesis(source, label, len(checked.values[0]), record)
    raise LatentRejected(record)


class LatentFunction:
    """A verified ``latent_factors`` run in the sandbox, one round trip per batch (remembered per
    transition). A value that is not finite on a new state becomes 0 and is counted
    (``nonfinite``): the function passed on the recorded states, and training must not crash."""

    def __init__(self, source: str, dimension: int, cache_size: int = 100_000):
        from .sandbox import load_function

        self.source, self.dimension = source, int(dimension)
        self.function = load_function(source + f"\n\n\ndef {CALLER}(values):\n    return {SPEC.name}(*values)\n",
                                      CALLER, timeout=10.0)
        self._memo = BatchMemo(lambda pairs: [self._row(value) for value in self.function.batch(pairs)], cache_size)
        self.nonfinite = 0

    def __call__(self, pairs: list[list[dict[str, Any]]]) -> np.ndarray:
        return np.stack(self._memo(pairs)) if pairs else np.zeros((0, self.dimension), np.float32)

    def _row(self, value: Any) -> np.ndarray:
        try:
            row = np.asarray(value, dtype=np.float64).reshape(-1)
        except (TypeError, ValueError):
            row = np.full(self.dimension, np.nan)
        if row.shape != (self.dimension,) or not np.isfinite(row).all():
            self.nonfinite += 1
            row = np.nan_to_num(row, nan=0.0, posinf=0.0, neginf=0.0) if row.shape == (self.dimension,) else np.zeros(self.dimension)
        return row.astype(np.float32)

    def features(self, batch: TransitionBatch) -> np.ndarray:
        return self([[dict(s), dict(n)] for s, n in zip(batch.states, batch.next_states)])

    def close(self) -> None:
        self.function.close()


class LaRe(RRD):
    """RRD's unbiased objective over LLM-written latent factors: the decoder of the paper."""

    name = "lare"

    def __init__(self, latent: LatentFunction, hidden: int = 256, lr: float = 3e-4, k: int = 64, episodes: int = 256,
                 seed: int = 0):
        super().__init__(hidden=hidden, lr=lr, k=k, episodes=episodes, unbiased=True, seed=seed,
                         features=latent.features, feature_size=latent.dimension)
        self.latent = latent

    def close(self) -> None:
        self.latent.close()


def _env_id(env: Any) -> str:
    spec = env.get_attr("spec")[0] if hasattr(env, "get_attr") else getattr(env, "spec", None)
    if spec is None:
        raise ValueError("lare verifies its function on states of a fresh copy of the env: give an env made by gym.make")
    return spec.id


def make_lare(env: Any, gamma: float, llm: str = "hf:default", code: str | None = None, samples: int = 5, repairs: int = 5,
              states: int = 512, save: str | None = None, online: bool = False, episodes: int = 256, k: int = 64,
              lr: float = 3e-4, fit_rounds: int = 32, update_every: int = 2048, seed: int = 0,
              name: str = "lare") -> Redistribution:
    """The ``lare`` shaping: the LLM ``llm`` writes the latent function (or ``code=FILE.py`` gives
    it), verified on ``states`` transitions of a random policy; ``save=FOLDER`` keeps the synthesis.
    Relabelled in the agent (install with ``install_credit``), or paid online with ``online=true``."""
    base = getattr(env, "unwrapped", env)
    schema = base.get_attr("state_schema")[0] if hasattr(base, "get_attr") else getattr(base, "state_schema", None)
    if not schema:
        raise ValueError("lare's factors read info['state']: it needs an env with a state_schema, such as an Align env")
    env_id = _env_id(env)
    inputs = transition_inputs(env_id, states)
    if code is not None:
        from .reward_code import code_path

        source = code_path(code).read_text()
        try:
            dimension = len(check_code(source, SPEC, inputs).values[0])
        except CodeRejected as error:
            raise ValueError(f"lare(code={code!r}) cannot be used: {error.reason}") from None
    else:
        import gymnasium as gym

        from .clients import get_client

        fresh = gym.make(env_id)
        synthesis = synthesize_latent(get_client(llm), fresh, inputs, samples=samples, repairs=repairs)
        fresh.close()
        if save is not None:
            synthesis.save(save)
        source, dimension = synthesis.source, synthesis.dimension
    method = LaRe(LatentFunction(source, dimension), lr=lr, k=k, episodes=episodes, seed=seed)
    return Redistribution(method, online=online, fit_rounds=fit_rounds, update_every=update_every, seed=seed, name=name)
