"""ELLM: Exploring with LLMs (Du et al. 2023, "Guiding Pretraining in Reinforcement Learning with
Large Language Models").

Before each step the language model suggests goals for what the agent sees (the ``ellm_goals``
template: the valid verbs, two few-shot examples of ``- verb noun`` bullets, the current situation
in words). The transition is rewarded by how well the caption of what happened matches the best
suggested goal: ``max_g cos(E(caption), E(g))`` under the sentence encoder (all-MiniLM-L6-v2, as in
the paper), counted only above ``threshold``. A goal achieved is not suggested again in that
episode.

As in the paper: the suggestions for a situation are cached (queried at temperature 0.1, with a
fixed seed, so the cache answers every later query of the same situation), and an answer with a
line that is not a bullet is discarded (no goals for that situation; counted).

Adapted:

- the situation is the env's ``info["surroundings"]`` where it has them (what the agent sees
  around it), else its last caption, prefixed by the episode's own task (``info["task"]``: on
  TextQuest each episode has its quest), where the paper described Crafter's view and inventory;
  the caption matched against the goals is the step's event, and a step without one (the empty
  caption) matches nothing;
- the threshold: the paper's 0.99 compares action names; captions need a lower one.
  :data:`THRESHOLD` = 0.55 is the middle of the interval (0.34, 0.77) of thresholds that separate
  the 10 matching from the 12 non-matching caption-goal pairs of :data:`HELD_OUT` (Crafter-like
  events, none from an Align task) with the embedded encoder; :func:`separating_thresholds`
  recomputes it. Similarity also matches near misses: with this encoder "You step onto the key."
  scores 0.82 against "You pick up the key.", and "You pick up the key." 0.75 against "You unlock
  the door with the key.", so a goal may be achieved by the event before it (no threshold
  separates these from true matches such as "You reach the goal." and "go to goal", 0.64);
- suggestions are fetched synchronously, on the first sight of a (task, situation) (a handful
  per task on KeyDoor, which has about 18 captions; thousands on TextQuest, whose quests and rooms
  vary per episode), the new situations of a vector step in one batched call, and then cached in
  memory and on disk.

An oracle (``llm=oracle`` or ``oracle(error=p, mode=flip|positive)``,
:mod:`~align_gym.llm_rewards.oracle`) suggests the task's remaining subgoals instead, read off the
privileged state before the step and worded as the captions that achieving them produces (the
env's ``subgoal_captions``: KeyDoor and MiniHack have them), so that they clear the threshold; each
answer is corrupted at the rate ``p`` with wrong goals drawn from the events the module has met
that are not subgoals. An answer is kept per question (task, situation, subgoals), as the cache
keeps a model's.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..wrappers.core import EpisodeStarts, RewardModule, TransitionBatch
from .clients import cost_stats, generate_from_template
from .oracle import parse_oracle
from .parsing import ParseError, parse_bullets

THRESHOLD = 0.55
VERBS = "pick up, open, unlock, go to, reach, walk through"

HELD_OUT: tuple[tuple[str, str, bool], ...] = (
    ("You chop down the tree.", "chop tree", True), ("You drink some water.", "drink water", True),
    ("You open the chest.", "open chest", True), ("You pick up the sword.", "pick up sword", True),
    ("You light the torch.", "light torch", True), ("You climb the ladder.", "climb ladder", True),
    ("You eat the apple.", "eat apple", True), ("You unlock the gate with the key.", "unlock gate", True),
    ("You walk into the cave.", "go to cave", True), ("You push the boulder.", "push boulder", True),
    ("You chop down the tree.", "drink water", False), ("You drink some water.", "open chest", False),
    ("You open the chest.", "climb ladder", False), ("You pick up the sword.", "eat apple", False),
    ("You light the torch.", "push boulder", False), ("You climb the ladder.", "chop tree", False),
    ("You eat the apple.", "unlock gate", False), ("You unlock the gate with the key.", "light torch", False),
    ("You walk into the cave.", "pick up sword", False), ("You push the boulder.", "go to cave", False),
    ("You bump into the wall.", "open chest", False), ("Nothing happens.", "pick up sword", False),
)


def separating_thresholds(encoder: Any, pairs: Sequence[tuple[str, str, bool]] = HELD_OUT) -> tuple[float, float]:
    """The interval of thresholds that put every matching pair above and every other below
    (empty, low > high, when none does)."""
    captions = encoder.encode([caption for caption, _, _ in pairs])
    goals = encoder.encode([goal for _, goal, _ in pairs])
    similarity = (captions * goals).sum(1)
    matching = np.array([match for _, _, match in pairs])
    return float(similarity[~matching].max()), float(similarity[matching].min())


class ELLMBonus(RewardModule):
    """Caption-goal similarity with LLM-suggested goals; see the module docstring."""

    invariant = False
    needs = frozenset({"captions", "tasks", "surroundings", "episode_ids", "terminated", "truncated"})

    def __init__(self, task: str, llm: Any = "hf:default", encoder: Any = None, threshold: float = THRESHOLD,
                 verbs: str = VERBS, max_tokens: int = 48, subgoal_captions: Callable[[dict], list[str]] | None = None,
                 seed: int = 0, name: str = "ellm"):
        """``task``: the env's task, for transitions whose env states none of its own per episode;
        ``subgoal_captions``: the env's, which an oracle ``llm`` answers from."""
        self.task, self.threshold, self.verbs, self.max_tokens, self.name = task, threshold, verbs, max_tokens, name
        oracle = parse_oracle(llm)
        if oracle is not None and subgoal_captions is None:
            raise ValueError("ellm's oracle suggests the env's remaining subgoals: it needs an env with "
                             "subgoal_captions(state), as KeyDoor and MiniHack have")
        self.corruption = oracle.corruption(seed) if oracle is not None else None
        self.subgoal_captions = subgoal_captions
        if oracle is not None:
            self.needs = self.needs | {"states"}
        self._events: dict[str, None] = {}  # the events met, in order (an oracle's wrong goals come from them)
        self._llm, self._encoder = llm, encoder  # built on first use: building the module costs nothing
        self._template: Any = None
        self._goals: dict[tuple[str, str], list[str]] = {}  # (task, situation) -> suggested goals
        self._situation: dict[int, str] = {}  # episode id -> the situation its next step starts from
        self._achieved: dict[int, set[str]] = {}  # episode id -> goals already rewarded
        self.stats = {"queries": 0, "unparsed": 0, "goals_achieved": 0}

    @property
    def client(self) -> Any:
        if isinstance(self._llm, str):
            from .clients import get_client

            self._llm = get_client(self._llm)
        return self._llm

    @property
    def encoder(self) -> Any:
        from .encoder import shared_encoder

        return self._encoder or shared_encoder()

    def goals(self, situation: str, task: str | None = None) -> list[str]:
        """The suggested goals for ``situation`` under ``task`` (the module's task by default):
        asked once, then kept."""
        key = (task or self.task, situation)
        self.ask([key])
        return self._goals[key]

    def ask(self, keys: Sequence[tuple[str, str]]) -> None:
        """Ask for the goals of each (task, situation) of ``keys`` not asked yet, in one call (the
        situations a vector step meets are asked together)."""
        new = [key for key in dict.fromkeys(keys) if key not in self._goals]
        if not new:
            return
        from .prompts import load_template

        self._template = self._template or load_template("ellm_goals")
        prompts = [self._template.render_chat(verbs=self.verbs, state=" ".join(key).strip()) for key in new]
        answers = generate_from_template(self.client, prompts, self._template.key, max_tokens=self.max_tokens,
                                         temperature=0.1, seed=0)
        for key, [answer] in zip(new, answers):
            self.stats["queries"] += 1
            try:
                self._goals[key] = parse_bullets(answer)
            except ParseError:  # a line that is not a bullet: the answer is discarded, as in the paper
                self.stats["unparsed"] += 1
                self._goals[key] = []

    def oracle_goals(self, state: dict, situation: str, task: str | None = None) -> list[str]:
        """The oracle's suggestions: the remaining subgoals in ``state``, corrupted (kept per question)."""
        truth = list(self.subgoal_captions(state))
        key = (task or self.task, situation, *truth)
        if key not in self._goals:
            self.stats["queries"] += 1
            self._goals[key] = self.corruption.goals(truth, [e for e in self._events if e not in truth])
        return self._goals[key]

    def start_episodes(self, starts: EpisodeStarts) -> None:
        for episode, caption, surroundings in zip(starts.episode_ids, starts.captions, starts.surroundings):
            self._situation[int(episode)], self._achieved[int(episode)] = surroundings or caption, set()

    def reward(self, batch: TransitionBatch) -> np.ndarray:
        out = np.zeros(len(batch))
        # each transition's question: the episode's task and the situation before the step
        questions = [(task or self.task, self._situation.get(int(episode), ""))
                     for task, episode in zip(batch.tasks, batch.episode_ids)]
        if self.corruption is None:  # the step's new situations, asked in one batch
            self.ask([question for question, caption in zip(questions, batch.captions) if caption])
        for i, (episode, caption) in enumerate(zip(batch.episode_ids, batch.captions)):
            episode = int(episode)
            achieved = self._achieved.setdefault(episode, set())
            if not caption:  # no event: nothing can match
                goals = []
            elif self.corruption is not None:
                goals = self.oracle_goals(batch.states[i], questions[i][1], batch.tasks[i])
                self._events.setdefault(caption)
            else:  # asked above, with the step's other new situations
                goals = self._goals[questions[i]]
            goals = [g for g in goals if g not in achieved]
            if goals:
                similarity = self.encoder.encode(goals) @ self.encoder.encode([caption])[0]
                best = int(np.argmax(similarity))
                if similarity[best] > self.threshold:
                    out[i] = float(similarity[best])
                    achieved.add(goals[best])
                    self.stats["goals_achieved"] += 1
            if batch.terminated[i] or batch.truncated[i]:
                self._situation.pop(episode, None)
                self._achieved.pop(episode, None)
            else:
                self._situation[episode] = batch.surroundings[i] or caption
        return out

    def update(self, batch: TransitionBatch) -> dict[str, float]:
        """Nothing to learn; reports the LLM's cost and the goals achieved since the start."""
        cost = cost_stats(self._llm) if not isinstance(self._llm, str) else {}
        oracle = {k: float(v) for k, v in self.corruption.stats.items()} if self.corruption is not None else {}
        return {**{k: float(v) for k, v in self.stats.items()}, **oracle, **cost}

    def state_dict(self) -> dict[str, Any]:
        return {"goals": [[list(key), goals] for key, goals in self._goals.items()]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._goals = {tuple(key): list(goals) for key, goals in state["goals"]}


def make_ellm(env: Any, gamma: float, coef: float = 1.0, llm: str = "hf:default", threshold: float = THRESHOLD,
              verbs: str = VERBS, seed: int = 0, name: str = "ellm"):
    """The ``ellm`` shaping for an env with a ``task`` (any Align env); ``llm=oracle(...)`` for
    an env with ``subgoal_captions`` (KeyDoor, MiniHack)."""
    from ..wrappers.intrinsic import make_intrinsic
    from ..wrappers.potential import env_attribute

    task = env_attribute(env, "task")
    if not task:
        raise ValueError("ellm needs an env with a task in words (env.unwrapped.task), such as an Align env")
    bonus = ELLMBonus(task, llm, threshold=threshold, verbs=verbs, subgoal_captions=env_attribute(env, "subgoal_captions"),
                      seed=seed, name=name)
    return make_intrinsic(bonus, coef, 0.0, False, name)
