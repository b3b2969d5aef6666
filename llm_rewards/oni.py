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

Labellers: the LLM (``llm="hf:default"``, ``openai:...``) or an oracle (``llm=oracle`` or
``llm=oracle(error=p, mode=flip|positive)``, :mod:`~align_gym.llm_rewards.oracle`): the env's
privileged state, clearly named: a caption is helpful when the transition that first showed it
raised the env's ``reference`` potential by more than ``margin`` (a subgoal reached: the key taken,
the door opened, the goal reached), each answer then corrupted at the rate ``p``. The oracle at
``p = 0`` is the upper bound that separates the method's own quality from its LLM's.

As in the paper: the annotator labels batches of :data:`BATCH` (100) newest captions; the prompt
holds a few labelled :data:`EXAMPLES`; labelling stops at :data:`MAX_LABELS` (25k) labels; a
caption whose labelling failed (an answer that did not parse, a failed or dropped batch) may be
asked again, :data:`MAX_ATTEMPTS` times in all. Captions are asked about under the episode's own
task (``info["task"]``: TextQuest draws a quest per episode): labels are kept per (task, caption).
A step without an event (the empty caption) is neither asked about nor paid, as the paper's empty
NetHack messages.

Simplified: the classifier and the reward model read the sentence encoder's embeddings of the task
and the caption side by side, where the paper trained its own text encoder over messages alone
(its task was fixed).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..wrappers.core import EpisodeStarts, RewardModule, TransitionBatch
from ..wrappers.count import EpisodeCounts
from ..wrappers.nets import seeded_init
from .annotator import Annotator
from .clients import cost_stats, generate_from_template
from .oracle import Corruption, parse_oracle
from .parsing import ParseError, parse_label

VARIANTS = ("retrieval", "classification", "ranking")
POOL_EVERY, PAIRS_WAITING, PAIRS_AT_ONCE = 10, 200, 10  # the ranking variant's pool and queue
BETA = 3.0  # the count exponent of the paper's 1 / N_ep(c)^beta
BATCH = 100  # captions an annotator batch labels, as the paper's annotator
MAX_LABELS = 25_000  # labelling (and so the classifier's training) stops here, as in the paper
MAX_ATTEMPTS = 3  # times a caption may be asked about in all, when its labelling fails
# A few labelled examples, as the paper's prompt has, for a task no Align env poses (so they
# show the labels' meaning without answering any of ours).
EXAMPLES = """Examples, for the task "collect wood, then build a table":
Example 1: "You collect wood." is helpful and should be labelled as FOO.
Example 2: "You walk north." is not helpful and should be labelled as BAR.
Example 3: "You place a table." is helpful and should be labelled as FOO.
Example 4: "You bump into a tree." is not helpful and should be labelled as BAR."""

Item = tuple[str, str]  # (task, caption)


def llm_labeller(client: Any, max_tokens: int = 128) -> Callable[[list[Item]], list[bool | None]]:
    """Label (task, caption) items with ``oni_label``: True (FOO), False (BAR) or None (unparsed)."""
    from .prompts import load_template

    template = load_template("oni_label")

    def label(items: list[Item]) -> list[bool | None]:
        prompts = [template.render_chat(task=task, caption=c, examples=EXAMPLES) for task, c in items]
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
    needs = frozenset({"captions", "tasks", "states", "next_states", "episode_ids", "terminated", "truncated"})

    def __init__(self, label_fn: Callable[[list[Any]], Sequence[Any]], variant: str = "retrieval",
                 delivery: str = "async", delay: int = 8, encoder: Any = None, seed: int = 0,
                 annotator: dict[str, Any] | None = None, task: str = "", max_labels: int = MAX_LABELS,
                 max_attempts: int = MAX_ATTEMPTS, name: str = "oni"):
        """``label_fn`` labels (task, caption) items (the ranking variant: (task, caption, caption)
        pairs, answered with P(the second is better)); ``task`` stands in for transitions whose env
        states no task of its own."""
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
        if delivery not in ("async", "sync"):
            raise ValueError(f"delivery must be 'async' or 'sync', got {delivery!r}")
        self.label_fn, self.variant, self.delivery, self.delay, self.name = label_fn, variant, delivery, delay, name
        self.task, self.max_labels, self.max_attempts = task, max_labels, max_attempts
        self.labels: dict[tuple, Any] = {}  # what has arrived (unparsed answers are left out)
        self._scheduled: list[tuple[int, tuple, Any]] = []  # sync: (due call, item, label)
        self._calls = 0
        self._attempts: Counter[tuple] = Counter()  # item -> times it was asked about
        self._waiting: set[tuple] = set()  # asked, no answer back yet
        self._episode_counts = EpisodeCounts()
        self._encoder, self._seed = encoder, seed
        self._classifier: Classifier | None = None
        self._new_labels = 0
        self._pool: list[Item] = []  # ranking: every 10th (task, caption) met, repeats kept; pairs come from it
        self._seen = 0
        self._rng = np.random.default_rng(seed)
        self._reward_model: Any = None
        self._norm = (0.0, 1.0, 0.0)  # ranking: mean, std and threshold of the normalised reward
        self._annotator = Annotator(label_fn, **{"batch_size": BATCH, **(annotator or {})}) if delivery == "async" else None
        self.first_seen: dict[Item, tuple[dict, dict]] = {}  # item -> (state, next state): the oracle reads it
        self.client: Callable[[], Any] = lambda: None  # the labeller's LLM client, where this process has it

    # ---- labels -------------------------------------------------------------------------

    def _submit_pairs(self, items: list[Item]) -> None:
        """Ranking: every 10th item joins the pool; queue 10 random pairs (of one task, two
        different captions) while few wait."""
        for item in items:
            self._seen += 1
            if self._seen % POOL_EVERY == 0:
                self._pool.append(item)
        if len(self._pool) >= 2 and self._pending() < PAIRS_WAITING:
            picks = self._rng.integers(len(self._pool), size=(PAIRS_AT_ONCE, 2))
            self._submit([(self._pool[i][0], self._pool[i][1], self._pool[j][1]) for i, j in picks
                          if self._pool[i][0] == self._pool[j][0] and self._pool[i][1] != self._pool[j][1]])

    def _pending(self) -> int:
        return self._annotator.pending if self._annotator is not None else len(self._scheduled)

    def _submit(self, items: list[tuple]) -> None:
        """Ask about the items not labelled, not waiting for an answer and not yet asked
        ``max_attempts`` times, while fewer than ``max_labels`` labels have arrived."""
        if len(self.labels) >= self.max_labels:
            return
        new = [item for item in dict.fromkeys(items) if item not in self.labels and item not in self._waiting
               and self._attempts[item] < self.max_attempts]
        if not new:
            return
        self._waiting.update(new)
        self._attempts.update(new)
        if self._annotator is not None:
            self._annotator.submit(new)
        else:  # sync: labelled now, applied `delay` calls from now
            for item, label in zip(new, self.label_fn(new)):
                self._scheduled.append((self._calls + self.delay, item, label))

    def _receive(self) -> None:
        if self._annotator is not None:
            arrived = self._annotator.poll()
        else:
            arrived = {item: lab for due, item, lab in self._scheduled if due <= self._calls}
            self._scheduled = [entry for entry in self._scheduled if entry[0] > self._calls]
        for item, label in arrived.items():
            self._waiting.discard(item)
            if label is not None:  # None (unparsed, failed, dropped): it may be asked again
                self.labels[item] = float(label) if self.variant == "ranking" else bool(label)
                self._new_labels += 1

    # ---- reward -------------------------------------------------------------------------

    def _features(self, items: Sequence[Item]) -> np.ndarray:
        return item_features(self._encoder, items)

    def _helpful(self, items: list[Item]) -> np.ndarray:
        if self.variant == "retrieval":
            return np.array([float(self.labels.get(item, False)) for item in items])
        if self.variant == "ranking":
            if self._reward_model is None:
                return np.zeros(len(items))
            values = (self._reward_model(self._features(items)) - self._norm[0]) / self._norm[1]
            return np.where(values > self._norm[2], values, 0.0)
        if self._classifier is None:  # nothing learned yet
            return np.zeros(len(items))
        return self._classifier.helpful(self._features(items)).astype(np.float64)

    def items(self, batch: TransitionBatch) -> list[Item]:
        """Each transition's (task, caption): the episode's task where the env gives one."""
        return [(task or self.task, caption) for task, caption in zip(batch.tasks, batch.captions)]

    def reward(self, batch: TransitionBatch) -> np.ndarray:
        items = self.items(batch)
        events = [item for item in items if item[1]]  # the empty caption: nothing happened, nothing to ask
        for i, item in enumerate(items):
            if item[1]:
                self.first_seen.setdefault(item, (batch.states[i], batch.next_states[i]))
        self._calls += 1
        self._receive()
        if self.variant != "retrieval" and self._new_labels:
            self._train()
        if self.variant == "ranking":
            self._submit_pairs(events)
        else:
            self._submit(events)
        paid = np.array([bool(caption) for _, caption in items], dtype=np.float64)
        if paid.any():
            paid[paid > 0] = self._helpful(events)
        return paid / self._episode_counts.count(list(batch.captions), batch) ** BETA

    def _train(self) -> None:
        """32 gradient steps on every label so far, each time labels arrive."""
        self._new_labels = 0
        if self.variant == "ranking":
            from .motif import RewardModel

            pairs = list(self.labels)
            first = self._features([(task, a) for task, a, _ in pairs])
            second = self._features([(task, b) for task, _, b in pairs])
            if self._reward_model is None:
                self._reward_model = RewardModel(first.shape[1], seed=self._seed)
            self.classifier_loss = self._reward_model.fit(first, second, np.array([self.labels[p] for p in pairs]),
                                                          steps=32, batch_size=256)
            # normalised over the pool's occurrences (a caption met often weighs as often), as Motif
            raw = self._reward_model(self._features(self._pool))
            mean, std = float(raw.mean()), float(raw.std()) + 1e-8
            self._norm = (mean, std, float(np.median((raw - mean) / std)))
            return
        items = list(self.labels)
        x = self._features(items)
        if self._classifier is None:
            self._classifier = Classifier(x.shape[1], self._seed)
        self.classifier_loss = self._classifier.train(x, np.array([self.labels[item] for item in items]))

    def start_episodes(self, starts: EpisodeStarts) -> None:
        self._episode_counts.start(starts.episode_ids)

    def update(self, batch: TransitionBatch) -> dict[str, float]:
        """Nothing learned here (labels and the classifier update as labels arrive): reports the
        labelling's progress and cost."""
        stats = {"labels": float(len(self.labels)), "helpful": float(sum(self.labels.values())),
                 "asked": float(len(self._attempts)), "asked_again": float(sum(self._attempts.values()) - len(self._attempts))}
        corruption = getattr(self.label_fn, "corruption", None)
        if corruption is not None:
            stats.update({k: float(v) for k, v in corruption.stats.items()})
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
        state: dict[str, Any] = {"labels": [[*item, label] for item, label in self.labels.items()]}
        if self._classifier is not None:
            state["classifier"] = self._classifier.net.state_dict()
        if self._reward_model is not None:
            state.update(reward_model=self._reward_model.net.state_dict(), norm=self._norm, pool=list(self._pool))
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.labels = {tuple(entry[:-1]): entry[-1] for entry in state["labels"]}
        self._attempts.update({item: 1 for item in self.labels if item not in self._attempts})
        if "reward_model" in state:
            from .motif import RewardModel

            self._pool, self._norm = [tuple(item) for item in state["pool"]], tuple(state["norm"])
            self._reward_model = self._reward_model or RewardModel(self._features(self._pool[:1]).shape[1], seed=self._seed)
            self._reward_model.net.load_state_dict(state["reward_model"])
        if "classifier" in state:
            x = self._features(list(self.labels)[:1] or [("", "")])
            self._classifier = self._classifier or Classifier(x.shape[1], self._seed)
            self._classifier.net.load_state_dict(state["classifier"])


def item_features(encoder: Any, items: Sequence[Item]) -> np.ndarray:
    """The task's and the caption's sentence embeddings side by side, one row per (task, caption)."""
    from .encoder import shared_encoder

    encoder = encoder or shared_encoder()
    tasks, captions = encoder.encode([t for t, _ in items]), encoder.encode([c for _, c in items])
    return np.concatenate([tasks, captions], axis=1).astype(np.float32)


class OracleLabeller:
    """The oracle: an item is helpful when the transition that first showed it raised ``progress``
    (the env's reference potential) by more than ``margin``; each answer then corrupted by
    ``corruption`` (see :mod:`~align_gym.llm_rewards.oracle`). The ranking variant's oracle
    prefers the caption whose first transition raised ``progress`` more (ties within ``margin`` / 10)."""

    def __init__(self, progress: Callable[[dict], float], corruption: Corruption, margin: float = 0.1,
                 pairs: bool = False):
        self.progress, self.corruption, self.margin, self.pairs = progress, corruption, margin, pairs
        self.module: ONIBonus | None = None  # set once the module exists: the oracle reads its first_seen

    def rise(self, item: Item) -> float:
        state, next_state = self.module.first_seen[item]
        return self.progress(next_state) - self.progress(state) if state and next_state else 0.0

    def __call__(self, items: list[tuple]) -> list[Any]:
        if self.pairs:
            out = []
            for task, a, b in items:
                gap = self.rise((task, b)) - self.rise((task, a))
                out.append(self.corruption.preference(0.5 if abs(gap) <= self.margin / 10 else float(gap > 0)))
            return out
        return [self.corruption.label(self.rise(item) > self.margin) for item in items]


def labeller_factory(llm: str, pairs: bool = False) -> Callable[[list[Any]], list[Any]]:
    """Build the LLM labeller (in a :class:`~align_gym.llm_rewards.labeller.ProcessLabeller`'s
    child): (task, caption) items -> labels, or, for the ranking variant, (task, caption, caption)
    pairs -> preferences."""
    from .clients import get_client

    if pairs:
        from .motif import llm_preferences

        return llm_preferences(get_client(llm))
    return llm_labeller(get_client(llm))


def make_oni(env: Any, gamma: float, coef: float = 0.4, variant: str = "retrieval", llm: str = "hf:default",
             delivery: str = "async", delay: int = 8, margin: float = 0.1, process: bool = False, seed: int = 0,
             max_labels: int = MAX_LABELS, name: str = "oni"):
    """The ``oni`` shaping: ``llm=oracle`` (or ``oracle(error=p, mode=...)``) labels from the env's
    privileged state; with ``process=True`` the LLM labels in a child program (the env loop keeps
    its core)."""
    from ..wrappers.intrinsic import make_intrinsic
    from ..wrappers.potential import env_attribute, named_potentials

    task = env_attribute(env, "task")
    if not task:
        raise ValueError("oni needs an env with a task in words (env.unwrapped.task), such as an Align env")
    oracle = parse_oracle(llm)
    labeller: Callable[[list[Any]], list[Any]]
    if oracle is not None:
        progress = named_potentials(env).get("reference")
        if progress is None:
            raise ValueError("the oracle labeller needs an env with a 'reference' potential")
        labeller = OracleLabeller(progress, oracle.corruption(seed), margin, variant == "ranking")
    elif process:
        from functools import partial

        from .labeller import ProcessLabeller

        labeller = ProcessLabeller(partial(labeller_factory, llm, variant == "ranking"))
    else:
        from .clients import get_client

        client: list[Any] = []  # loaded on the first label, in the annotator's thread

        def labeller(items: list[Any]) -> list[Any]:
            if not client:
                client.append(get_client(llm))
            if variant == "ranking":
                from .motif import llm_preferences

                return llm_preferences(client[0])(items)
            return llm_labeller(client[0])(items)

    module = ONIBonus(labeller, variant, delivery, delay, seed=seed, task=task, max_labels=max_labels, name=name)
    if isinstance(labeller, OracleLabeller):
        labeller.module = module
    if oracle is None and not process:
        module.client = lambda: client[0] if client else None
    return make_intrinsic(module, coef, 0.0, False, name)
