"""Motif: Intrinsic Motivation from Artificial Intelligence Feedback (Klissarov et al. 2023).

Two phases, as in the paper.

1. **Offline.** Captions are collected with a random policy (``offline_steps`` env steps on a copy
   of the env; the bench takes them out of a cell's budget and starts its curve there), and the LLM is asked which of two
   captions shows more progress on the task (``motif_pair``: an analysis, then
   ``("best_description": 1 | 2 | None)``), for ``pairs`` random pairs. Identical pairs are ties
   without a call; an answer that does not parse is asked about once more, and then counted and
   dropped (the released code maps it to a tie). ``preference="logprob"`` reads the preference
   from the log-probabilities of the two answers instead of a generated analysis (minutes instead
   of hours with the embedded model; P(2 better) = softmax of the two scores).
2. **Reward model.** Caption features (the sentence encoder's embedding, where the paper trained a
   character CNN over NetHack's messages) -> MLP -> a scalar, trained with the soft cross-entropy
   of the Bradley-Terry model on each pair (target P(second better), 0.5 for ties): Adam, lr 1e-4,
   batches of up to 1024. The paper's 10 epochs over its ~500k pairs are ~5,000 gradient steps; a
   few hundred pairs need many more epochs for as many steps, so training is counted in steps
   (``steps``, 2,000).
3. **RL.** The model's output is normalised by its mean and std over the dataset (every
   occurrence of every caption collected, so a caption met often weighs as often, as in the
   paper), and ``r_int = 1[r_n > eps] * r_n / N_ep(c)^beta`` with ``eps`` the ``quantile`` (the
   median) of the normalised values over those occurrences and ``beta`` = 3; the term's ``coef``
   is the paper's ``alpha_int``, 0.1.

Adapted to event captions and per-episode tasks: a step without an event (the empty caption) is
left out of the dataset and pays nothing; each pair is two different captions met under one task,
asked about under that task (``info["task"]``: TextQuest draws a quest per episode), and the
reward model reads the task's and the caption's embeddings side by side (the paper's task was
fixed).

An oracle preference (``llm=oracle``, or ``oracle(error=p, mode=flip|positive)``) answers from the
env's privileged state instead: the caption whose transition raised the ``reference`` potential
more is better, each answer corrupted at the rate ``p`` (:mod:`~align_gym.llm_rewards.oracle`);
at ``p = 0`` the upper bound that separates Motif's quality from its LLM's.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..wrappers.core import EpisodeStarts, RewardModule, TransitionBatch
from ..wrappers.count import EpisodeCounts
from ..wrappers.nets import seeded_init
from .clients import cost_stats, generate_from_template
from .oracle import parse_oracle
from .parsing import ParseError, parse_choice

BETA = 3.0


Item = tuple[str, str]  # (task, caption)
Pair = tuple[str, str, str]  # (task, first caption, second caption)


def collect_captions(env: Any, steps: int, seed: int = 0) -> list[tuple[str, str, float]]:
    """``steps`` random-policy transitions of ``env``: (the episode's task, caption, rise of the
    reference potential), the rise read off the privileged state (only the oracle uses it)."""
    potentials = getattr(env.unwrapped, "potentials", {})
    progress = potentials.get("reference", lambda state: 0.0)
    env.action_space.seed(seed)
    _, info = env.reset(seed=seed)
    out = []
    for _ in range(steps):
        state = info["state"]
        _, _, terminated, truncated, info = env.step(env.action_space.sample())
        out.append((info.get("task") or env.unwrapped.task, info["caption"], progress(info["state"]) - progress(state)))
        if terminated or truncated:
            _, info = env.reset()
    return out


def llm_preferences(client: Any, mode: str = "generate", max_tokens: int = 200
                    ) -> Callable[[list[Pair]], list[float | None]]:
    """P(the second caption shows more progress on the task) for each (task, caption, caption),
    from the LLM; None: unparsed."""
    from .prompts import load_template

    template = load_template("motif_pair")

    def render(task: str, a: str, b: str) -> list[dict[str, str]]:
        return template.render_chat(task=task, description_1=a, description_2=b)

    def prefer(pairs: list[Pair]) -> list[float | None]:
        if mode == "logprob":  # the answer's start, scored with each verdict
            prompts = [render(*pair) for pair in pairs]
            one = client.score(prompts, ['("best_description": 1)'] * len(prompts))
            two = client.score(prompts, ['("best_description": 2)'] * len(prompts))
            return [float(1.0 / (1.0 + np.exp(sum(x) - sum(y)))) for x, y in zip(one, two)]
        out: list[float | None] = []
        answers = generate_from_template(client, [render(*pair) for pair in pairs], template.key,
                                         max_tokens=max_tokens, temperature=0.0)
        for pair, [answer] in zip(pairs, answers):
            for attempt in range(2):  # one follow-up question when nothing parses, as the paper
                try:
                    choice = parse_choice(answer, ["1", "2", "None"], key="best_description")
                    out.append({"1": 0.0, "2": 1.0, "None": 0.5}[choice])
                    break
                except ParseError:
                    if attempt == 0:
                        follow_up = render(*pair) + [{"role": "assistant", "content": answer},
                                                    {"role": "user", "content": "End with exactly one of "
                                                     '("best_description": 1), ("best_description": 2) or '
                                                     '("best_description": None).'}]
                        [[answer]] = generate_from_template(client, [follow_up], template.key,
                                                            max_tokens=max_tokens, temperature=0.0)
            else:
                out.append(None)
        return out

    return prefer


class RewardModel:
    """Caption embedding -> MLP -> scalar, trained with the Bradley-Terry soft cross-entropy."""

    def __init__(self, size: int, hidden: int = 256, lr: float = 1e-4, seed: int = 0):
        import torch

        # Built while the agent trains (Motif's lazy offline phase, ONI's first labels): the layers'
        # default initialisation, overwritten below, must not draw from the agent's generator.
        with torch.random.fork_rng(devices=[]):
            self.net = seeded_init(torch.nn.Sequential(torch.nn.Linear(size, hidden), torch.nn.ReLU(),
                                                       torch.nn.Linear(hidden, hidden), torch.nn.ReLU(),
                                                       torch.nn.Linear(hidden, 1)), seed)
        self.optimiser = torch.optim.Adam(self.net.parameters(), lr=lr)
        self.rng = np.random.default_rng(seed)

    def fit(self, first: np.ndarray, second: np.ndarray, p_second: np.ndarray, steps: int = 2000,
            batch_size: int = 1024) -> float:
        """Train on pairs (features of each side, P(second better)) for ``steps`` minibatches;
        returns the mean loss of the last 100."""
        import torch

        a, b, target = torch.from_numpy(first), torch.from_numpy(second), torch.from_numpy(p_second.astype(np.float32))
        losses = []
        for _ in range(steps):
            rows = self.rng.integers(len(a), size=min(batch_size, len(a)))
            logits = torch.stack([self.net(a[rows])[:, 0], self.net(b[rows])[:, 0]], dim=-1)
            targets = torch.stack([1 - target[rows], target[rows]], dim=-1)
            loss = -(targets * torch.log_softmax(logits, -1)).sum(-1).mean()
            self.optimiser.zero_grad()
            loss.backward()
            self.optimiser.step()
            losses.append(loss.item())
        return float(np.mean(losses[-100:]))

    def __call__(self, x: np.ndarray) -> np.ndarray:
        import torch

        with torch.no_grad():
            return self.net(torch.from_numpy(x))[:, 0].numpy().astype(np.float64)


class MotifBonus(RewardModule):
    """Motif's intrinsic reward from a preference-trained caption reward model; see the module docstring."""

    invariant = False
    needs = frozenset({"captions", "tasks", "episode_ids", "terminated", "truncated"})

    def __init__(self, dataset: Sequence[Item] | Callable[[], Sequence[Item]],
                 prefer: Callable[[list[Pair]], list[float | None]] | Callable[[], Any],
                 pairs: int = 500, quantile: float = 0.5, encoder: Any = None, seed: int = 0,
                 offline_steps: int = 0, steps: int = 2000, batch_size: int = 1024, lazy: bool = False,
                 task: str = "", name: str = "motif"):
        """``dataset``: the (task, caption) of every collected step, repeats kept; ``prefer``
        answers (task, caption, caption) pairs. Both may be given as callables that produce them
        (``lazy=True``): the offline phase then runs on first use, in the process that trains,
        not where the shaping is built or checked. ``task`` stands in for transitions whose env
        states no task of its own."""
        self.name, self.quantile, self.offline_steps, self.task = name, quantile, offline_steps, task
        self._encoder = encoder
        self._offline = (dataset, prefer, pairs, seed, steps, batch_size)
        self._cache: dict[Item, float] = {}
        self._episode_counts = EpisodeCounts()
        self.model: RewardModel | None = None
        self.client: Callable[[], Any] = lambda: None  # the preference LLM's client, once made
        self.corruption: Callable[[], Any] = lambda: None  # an oracle's corrupting stream, once made
        if not lazy:
            self._run_offline_phase()

    def _run_offline_phase(self) -> None:
        dataset, prefer, pairs, seed, steps, batch_size = self._offline
        if callable(dataset):
            dataset, prefer = dataset(), prefer()
        rng = np.random.default_rng(seed)
        pool = [(task, caption) for task, caption in dataset if caption]  # steps without an event are left out
        if not pool:
            raise ValueError("motif's offline phase met no caption: the env's steps never captioned an event")
        by_task: dict[str, list[int]] = {}
        for i, (task, _) in enumerate(pool):
            by_task.setdefault(task, []).append(i)
        # Each pair: a random occurrence, and a random occurrence met under the same task.
        firsts = rng.integers(len(pool), size=pairs)
        seconds = [by_task[pool[i][0]][int(j * len(by_task[pool[i][0]]))] for i, j in zip(firsts, rng.random(pairs))]
        chosen = [(pool[i][0], pool[i][1], pool[j][1]) for i, j in zip(firsts, seconds)]
        asked = list(dict.fromkeys((t, a, b) for t, a, b in chosen if a != b))  # identical pairs: ties without a call
        answers = dict(zip(asked, prefer(asked))) if asked else {}
        labelled = [(t, a, b, 0.5 if a == b else answers[(t, a, b)]) for t, a, b in chosen]
        kept = [row for row in labelled if row[3] is not None]
        self.stats = {"pairs": float(len(chosen)), "unparsed": float(len(labelled) - len(kept)),
                      "ties": float(sum(row[3] == 0.5 for row in kept))}
        first = self.features([(t, a) for t, a, _, _ in kept])
        second = self.features([(t, b) for t, _, b, _ in kept])
        self.model = RewardModel(first.shape[1], seed=seed)
        self.stats["reward_model_loss"] = self.model.fit(first, second, np.array([row[3] for row in kept]), steps,
                                                         batch_size)
        # Normalise over the dataset's occurrences; threshold at their quantile.
        raw = self.model(self.features(pool))
        self.mean, self.std = float(raw.mean()), float(raw.std()) + 1e-8
        self.threshold = float(np.quantile((raw - self.mean) / self.std, self.quantile))
        self.stats["share_paid"] = float(np.mean((raw - self.mean) / self.std > self.threshold))

    def features(self, items: Sequence[Item]) -> np.ndarray:
        from .oni import item_features

        return item_features(self._encoder, items)

    def normalised(self, items: Sequence[Item]) -> np.ndarray:
        """The reward model's normalised output for each (task, caption) (kept per item)."""
        if self.model is None:
            self._run_offline_phase()
        new = [item for item in dict.fromkeys(items) if item not in self._cache]
        if new:
            self._cache.update(zip(new, (self.model(self.features(new)) - self.mean) / self.std))
        return np.array([self._cache[item] for item in items])

    def reward(self, batch: TransitionBatch) -> np.ndarray:
        captions = list(batch.captions)
        items = [(task or self.task, caption) for task, caption in zip(batch.tasks, captions)]
        events = np.array([bool(caption) for caption in captions])
        values = np.zeros(len(items))
        if events.any():
            values[events] = self.normalised([item for item, event in zip(items, events) if event])
        paid = np.where(events & (values > self.threshold), values, 0.0)
        return paid / self._episode_counts.count(captions, batch) ** BETA

    def start_episodes(self, starts: EpisodeStarts) -> None:
        self._episode_counts.start(starts.episode_ids)

    def update(self, batch: TransitionBatch) -> dict[str, float]:
        """Nothing learned online: the offline phase's figures."""
        if self.model is None:
            self._run_offline_phase()
        corruption = self.corruption()
        oracle = {k: float(v) for k, v in corruption.stats.items()} if corruption is not None else {}
        return {**self.stats, "offline_steps": float(self.offline_steps), "threshold": self.threshold,
                **oracle, **cost_stats(self.client())}

    def state_dict(self) -> dict[str, Any]:
        if self.model is None:
            self._run_offline_phase()
        return {"model": self.model.net.state_dict(), "mean": self.mean, "std": self.std, "threshold": self.threshold}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.model is None:
            self._run_offline_phase()
        self.model.net.load_state_dict(state["model"])
        self.mean, self.std, self.threshold = state["mean"], state["std"], state["threshold"]
        self._cache = {}


def make_motif(env: Any, gamma: float, coef: float = 0.1, llm: str = "hf:default", preference: str = "generate",
               pairs: int = 500, offline_steps: int = 5000, quantile: float = 0.5, steps: int = 2000,
               batch_size: int = 1024, seed: int = 0, name: str = "motif"):
    """The ``motif`` shaping: the offline phase runs here, on a fresh copy of the env."""
    import gymnasium as gym

    from ..wrappers.intrinsic import make_intrinsic
    from ..wrappers.potential import env_attribute

    base = getattr(env, "unwrapped", env)
    spec = getattr(base, "spec", None) or (base.get_attr("spec")[0] if hasattr(base, "get_attr") else None)
    if spec is None:
        raise ValueError("motif needs a registered env (its offline phase makes a copy with gym.make)")
    found: dict[str, Any] = {}
    oracle = parse_oracle(llm)
    task = env_attribute(env, "task", "")

    def dataset() -> list[Item]:  # the offline phase, on first use: a random policy on a fresh copy
        copy = gym.make(spec.id)
        found["transitions"] = collect_captions(copy, offline_steps, seed)
        copy.close()
        return [(t, c) for t, c, _ in found["transitions"]]

    def preferences() -> Callable[[list[Pair]], list[float | None]]:
        if oracle is None:
            from .clients import get_client

            found["client"] = get_client(llm)
            return llm_preferences(found["client"], preference)
        rise: dict[Item, float] = {}
        for t, caption, delta in found["transitions"]:
            rise[t, caption] = max(rise.get((t, caption), -np.inf), delta)
        corruption = found["corruption"] = oracle.corruption(seed)
        return lambda pairs_: [corruption.preference(0.5 if np.isclose(rise[t, a], rise[t, b]) else
                                                     float(rise[t, b] > rise[t, a])) for t, a, b in pairs_]

    bonus = MotifBonus(dataset, preferences, pairs, quantile, seed=seed, offline_steps=offline_steps, steps=steps,
                       batch_size=batch_size, lazy=True, task=str(task or ""), name=name)
    bonus.client = lambda: found.get("client")
    bonus.corruption = lambda: found.get("corruption")
    return make_intrinsic(bonus, coef, 0.0, False, name)
