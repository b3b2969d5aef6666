"""ONI: Online Intrinsic rewards from LLM feedback (Zheng et al. 2024, "Online Intrinsic Rewards
for Decision Making Agents from Large Language Model Feedback").

While the agent trains, the captions it meets go to an asynchronous annotator that asks the LLM
whether each is helpful for the task (the ``oni_label`` template: ``<label> FOO </label>`` for
helpful, ``BAR`` otherwise, parsed strictly: the released code's "contains FOO" bug is not copied).
Labels arrive later; the reward model learns from what has arrived. Variants, as in the paper:

- ``retrieval``: the caption's own label in {0, 1} (0 while unlabelled);
- ``classification``: a classifier over caption features (the sentence encoder's embedding ->
  MLP [512, 512] -> 2 classes, dropout 0.1), trained online on every (caption, label) so far with
  Adam at lr 1e-4, batches of 256, 32 steps each time labels arrive; ``1[p(helpful) > 0.5]``;
- ``ranking`` (online Motif): every 10th caption joins a pool; while fewer than 200 pairs wait, 10
  random pairs of the pool are queued for the LLM's preference (``motif_pair``); Motif's
  Bradley-Terry reward model trains on every answered pair (32 steps each time answers arrive),
  and the reward is Motif's normalised value above its median (the paper's intended reward: its
  released code applied the model's raw output by mistake).

All variants pay ``r_int / N_ep(c)^3`` (``N_ep(c)`` the count of this caption in the episode,
this step included), times the term's ``coef`` (the paper's ``c_llm``, 0.4).

Delivery: ``"async"`` (the paper's; a run's rewards depend on when labels arrive) or ``"sync"``:
each caption is labelled at once but its label is applied only ``delay`` reward calls later, the
same every run: reproducible for tests and replay.

Labellers: the LLM (``llm="hf:default"``, ``openai:...``) or ``"oracle"``: the env's privileged
state, clearly named: a caption is helpful when the transition that first showed it raised the
env's ``reference`` potential by more than ``margin`` (a subgoal reached: the key taken, the door
opened, the goal reached). The oracle is the upper bound that separates the method's own quality
from its LLM's.

Simplified: the classifier and the reward model read the sentence encoder's embeddings, where the
paper trained its own text encoder.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..wrappers.core import EpisodeStarts, RewardModule, TransitionBatch
from ..wrappers.count import EpisodeCounts
from ..wrappers.nets import seeded_init
from .annotator import Annotator
from .clients import cost_stats, generate_from_template
from .parsing import ParseError, parse_label

VARIANTS = ("retrieval", "classification", "ranking")
POOL_EVERY, PAIRS_WAITING, PAIRS_AT_ONCE = 10, 200, 10  # the ranking variant's pool and queue
BETA = 3.0  # the count exponent of the paper's 1 / N_ep(c)^beta


def llm_labeller(client: Any, task: str, max_tokens: int = 128) -> Callable[[list[str]], list[bool | None]]:
    """Label captions with ``oni_label``: True (FOO), False (BAR) or None (unparsed)."""
    from .prompts import load_template

    template = load_template("oni_label")

    def label(captions: list[str]) -> list[bool | None]:
        prompts = [template.render_chat(task=task, caption=c, examples="") for c in captions]
        answers = generate_from_template(client, prompts, template.key, max_tokens=max_tokens, temperature=0.0)
        out: list[bool | None] = []
        for [answer] in answers:
            try:
                out.append(parse_label(answer, "FOO", "BAR"))
            except ParseError:
                out.append(None)
        return out

    return label


class Classifier:
    """Caption embedding -> MLP [512, 512] -> 2 classes, dropout 0.1 (the paper's head)."""

    def __init__(self, size: int, seed: int = 0, lr: float = 1e-4):
        import torch

        with torch.random.fork_rng(devices=[]):  # built once labels arrive, mid-training: see motif.RewardModel
            self.net = seeded_init(torch.nn.Sequential(torch.nn.Linear(size, 512), torch.nn.ReLU(), torch.nn.Dropout(0.1),
                                                       torch.nn.Linear(512, 512), torch.nn.ReLU(), torch.nn.Dropout(0.1),
                                                       torch.nn.Linear(512, 2)), seed)
        self.optimiser = torch.optim.Adam(self.net.parameters(), lr=lr)
        self.rng = np.random.default_rng(seed)

    def train(self, x: np.ndarray, y: np.ndarray, steps: int = 32, batch_size: int = 256) -> float:
        import torch

        self.net.train()
        features, labels, losses = torch.from_numpy(x), torch.from_numpy(y.astype(np.int64)), []
        # Dropout draws from torch's global generator, which the agent samples its actions from:
        # draw the masks from this classifier's own stream and leave the agent's where it was.
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(int(self.rng.integers(2**63)))
            for _ in range(steps):
                rows = self.rng.integers(len(x), size=min(batch_size, len(x)))
                loss = torch.nn.functional.cross_entropy(self.net(features[rows]), labels[rows])
                self.optimiser.zero_grad()
                loss.backward()
                self.optimiser.step()
                losses.append(loss.item())
        return float(np.mean(losses))

    def helpful(self, x: np.ndarray) -> np.ndarray:
        import torch

        self.net.eval()
        with torch.no_grad():
            return torch.softmax(self.net(torch.from_numpy(x)), -1)[:, 1].numpy() > 0.5


class ONIBonus(RewardModule):
    """ONI's intrinsic reward; see the module docstring."""

    invariant = False
    needs = frozenset({"captions", "states", "next_states", "episode_ids", "terminated", "truncated"})

    def __init__(self, label_fn: Callable[[list[str]], Sequence[bool | None]], variant: str = "retrieval",
                 delivery: str = "async", delay: int = 8, encoder: Any = None, seed: int = 0,
                 annotator: dict[str, Any] | None = None, name: str = "oni"):
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
        if delivery not in ("async", "sync"):
            raise ValueError(f"delivery must be 'async' or 'sync', got {delivery!r}")
        self.label_fn, self.variant, self.delivery, self.delay, self.name = label_fn, variant, delivery, delay, name
        self.labels: dict[str, bool] = {}  # what has arrived (unparsed answers are left out)
        self._scheduled: list[tuple[int, str, bool | None]] = []  # sync: (due call, caption, label)
        self._calls = 0
        self._asked: set[str] = set()
        self._episode_counts = EpisodeCounts()
        self._encoder, self._seed = encoder, seed
        self._classifier: Classifier | None = None
        self._new_labels = 0
        self._pool: list[str] = []  # ranking: the captions pairs are drawn from
        self._seen = 0
        self._rng = np.random.default_rng(seed)
        self._reward_model: Any = None
        self._norm = (0.0, 1.0, 0.0)  # ranking: mean, std and threshold of the normalised reward
        self._annotator = Annotator(label_fn, **(annotator or {})) if delivery == "async" else None
        self.first_seen: dict[str, tuple[dict, dict]] = {}  # caption -> (state, next state): the oracle reads it
        self.client: Callable[[], Any] = lambda: None  # the labeller's LLM client, where this process has it

    # ---- labels -------------------------------------------------------------------------

    def _waiting(self) -> int:
        return self._annotator.pending if self._annotator is not None else len(self._scheduled)

    def _submit_pairs(self, captions: list[str]) -> None:
        """Ranking: every 10th caption joins the pool; queue 10 random pairs while few wait."""
        for caption in captions:
            self._seen += 1
            if self._seen % POOL_EVERY == 0 and caption not in self._pool:
                self._pool.append(caption)
        if len(self._pool) >= 2 and self._waiting() < PAIRS_WAITING:
            picks = self._rng.integers(len(self._pool), size=(PAIRS_AT_ONCE, 2))
            self._submit([(self._pool[i], self._pool[j]) for i, j in picks if i != j])

    def _submit(self, captions: list[Any]) -> None:
        new = [c for c in dict.fromkeys(captions) if c not in self._asked]
        if not new:
            return
        self._asked.update(new)
        if self._annotator is not None:
            self._annotator.submit(new)
        else:  # sync: labelled now, applied `delay` calls from now
            for caption, label in zip(new, self.label_fn(new)):
                self._scheduled.append((self._calls + self.delay, caption, label))

    def _receive(self) -> None:
        if self._annotator is not None:
            arrived = self._annotator.poll()
        else:
            arrived = {c: lab for due, c, lab in self._scheduled if due <= self._calls}
            self._scheduled = [item for item in self._scheduled if item[0] > self._calls]
        for item, label in arrived.items():
            if label is not None:
                self.labels[item] = float(label) if self.variant == "ranking" else bool(label)
                self._new_labels += 1

    # ---- reward -------------------------------------------------------------------------

    def _features(self, captions: Sequence[str]) -> np.ndarray:
        from .encoder import shared_encoder

        return (self._encoder or shared_encoder()).encode(captions).astype(np.float32)

    def _helpful(self, captions: list[str]) -> np.ndarray:
        if self.variant == "retrieval":
            return np.array([float(self.labels.get(c, False)) for c in captions])
        if self.variant == "ranking":
            if self._reward_model is None:
                return np.zeros(len(captions))
            values = (self._reward_model(self._features(captions)) - self._norm[0]) / self._norm[1]
            return np.where(values > self._norm[2], values, 0.0)
        if self._classifier is None:  # nothing learned yet
            return np.zeros(len(captions))
        return self._classifier.helpful(self._features(captions)).astype(np.float64)

    def reward(self, batch: TransitionBatch) -> np.ndarray:
        captions = list(batch.captions)
        for i, caption in enumerate(captions):
            self.first_seen.setdefault(caption, (batch.states[i], batch.next_states[i]))
        self._calls += 1
        self._receive()
        if self.variant != "retrieval" and self._new_labels:
            self._train()
        if self.variant == "ranking":
            self._submit_pairs(captions)
        else:
            self._submit(captions)
        return self._helpful(captions) / self._episode_counts.count(captions, batch) ** BETA

    def _train(self) -> None:
        """32 gradient steps on every label so far, each time labels arrive."""
        self._new_labels = 0
        if self.variant == "ranking":
            from .motif import RewardModel

            pairs = list(self.labels)
            first, second = self._features([a for a, _ in pairs]), self._features([b for _, b in pairs])
            if self._reward_model is None:
                self._reward_model = RewardModel(first.shape[1], seed=self._seed)
            self.classifier_loss = self._reward_model.fit(first, second, np.array([self.labels[p] for p in pairs]),
                                                          steps=32, batch_size=256)
            raw = self._reward_model(self._features(self._pool))
            mean, std = float(raw.mean()), float(raw.std()) + 1e-8
            self._norm = (mean, std, float(np.median((raw - mean) / std)))
            return
        captions = list(self.labels)
        x = self._features(captions)
        if self._classifier is None:
            self._classifier = Classifier(x.shape[1], self._seed)
        self.classifier_loss = self._classifier.train(x, np.array([self.labels[c] for c in captions]))

    def start_episodes(self, starts: EpisodeStarts) -> None:
        self._episode_counts.start(starts.episode_ids)

    def update(self, batch: TransitionBatch) -> dict[str, float]:
        """Nothing learned here (labels and the classifier update as labels arrive): reports the
        labelling's progress and cost."""
        stats = {"labels": float(len(self.labels)), "helpful": float(sum(self.labels.values())),
                 "asked": float(len(self._asked))}
        if self._annotator is not None:
            stats.update({f"annotator_{k}": float(v) for k, v in self._annotator.stats.as_dict().items()})
            stats["labels_waiting"] = float(self._annotator.pending)
        if hasattr(self, "classifier_loss"):
            stats["classifier_loss"] = self.classifier_loss
        return {**stats, **cost_stats(self.client())}

    def close(self) -> None:
        """Stop the annotator (after the batch in flight) and a labeller's child program."""
        if self._annotator is not None:
            self._annotator.close()
        if callable(getattr(self.label_fn, "close", None)):
            self.label_fn.close()

    def wait_for_labels(self, timeout: float = 60.0) -> bool:
        """Block until every submitted caption is labelled (async delivery; for tests and evaluation)."""
        return self._annotator.wait_idle(timeout) if self._annotator is not None else True

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"labels": dict(self.labels)}
        if self._classifier is not None:
            state["classifier"] = self._classifier.net.state_dict()
        if self._reward_model is not None:
            state.update(reward_model=self._reward_model.net.state_dict(), norm=self._norm, pool=list(self._pool))
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.labels = dict(state["labels"])
        self._asked |= set(self.labels)
        if "reward_model" in state:
            from .motif import RewardModel

            self._pool, self._norm = list(state["pool"]), tuple(state["norm"])
            self._reward_model = self._reward_model or RewardModel(self._features(self._pool[:1]).shape[1], seed=self._seed)
            self._reward_model.net.load_state_dict(state["reward_model"])
        if "classifier" in state:
            x = self._features(list(self.labels)[:1] or [""])
            self._classifier = self._classifier or Classifier(x.shape[1], self._seed)
            self._classifier.net.load_state_dict(state["classifier"])


def oracle_labeller(module: ONIBonus, progress: Callable[[dict], float], margin: float = 0.1):
    """The oracle: helpful when the transition that first showed the caption raised ``progress``
    (the env's reference potential) by more than ``margin``."""

    def label(captions: list[str]) -> list[bool]:
        out = []
        for caption in captions:
            state, next_state = module.first_seen[caption]
            out.append(bool(state) and bool(next_state) and progress(next_state) - progress(state) > margin)
        return out

    return label


def labeller_factory(llm: str, task: str, pairs: bool = False) -> Callable[[list[Any]], list[Any]]:
    """Build the LLM labeller (in a :class:`~align_gym.llm_rewards.labeller.ProcessLabeller`'s
    child): captions -> labels, or, for the ranking variant, pairs -> preferences."""
    from .clients import get_client

    if pairs:
        from .motif import llm_preferences

        return llm_preferences(get_client(llm), task)
    return llm_labeller(get_client(llm), task)


def oracle_preferences(module: ONIBonus, progress: Callable[[dict], float], margin: float = 0.1):
    """The ranking variant's oracle: the caption whose first transition raised ``progress`` more
    is better (ties within ``margin`` / 10)."""

    def rise(caption: str) -> float:
        state, next_state = module.first_seen[caption]
        return progress(next_state) - progress(state) if state and next_state else 0.0

    def prefer(pairs: list[tuple[str, str]]) -> list[float]:
        return [0.5 if abs(rise(b) - rise(a)) <= margin / 10 else float(rise(b) > rise(a)) for a, b in pairs]

    return prefer


def make_oni(env: Any, gamma: float, coef: float = 0.4, variant: str = "retrieval", llm: str = "hf:default",
             delivery: str = "async", delay: int = 8, margin: float = 0.1, process: bool = False, seed: int = 0,
             name: str = "oni"):
    """The ``oni`` shaping: ``llm="oracle"`` labels from the env's privileged state; with
    ``process=True`` the LLM labels in a child program (the env loop keeps its core)."""
    from ..wrappers.intrinsic import make_intrinsic
    from ..wrappers.potential import named_potentials

    base = getattr(env, "unwrapped", env)
    task = getattr(base, "task", None) or (base.get_attr("task")[0] if hasattr(base, "get_attr") else None)
    if not task:
        raise ValueError("oni needs an env with a task in words (env.unwrapped.task), such as an Align env")
    holder: dict[str, ONIBonus] = {}
    if llm == "oracle":
        progress = named_potentials(env).get("reference")
        if progress is None:
            raise ValueError("the oracle labeller needs an env with a 'reference' potential")
        oracle = oracle_preferences if variant == "ranking" else oracle_labeller
        labeller = lambda items: oracle(holder["module"], progress, margin)(items)  # noqa: E731
    elif process:
        from functools import partial

        from .labeller import ProcessLabeller

        labeller = ProcessLabeller(partial(labeller_factory, llm, task, variant == "ranking"))
    else:
        from .clients import get_client

        client: list[Any] = []  # loaded on the first label, in the annotator's thread

        def labeller(items: list[Any]) -> list[Any]:
            if not client:
                client.append(get_client(llm))
            if variant == "ranking":
                from .motif import llm_preferences

                return llm_preferences(client[0], task)(items)
            return llm_labeller(client[0], task)(items)

    module = ONIBonus(labeller, variant, delivery, delay, seed=seed, name=name)
    holder["module"] = module
    if llm != "oracle" and not process:
        module.client = lambda: client[0] if client else None
    return make_intrinsic(module, coef, 0.0, False, name)
