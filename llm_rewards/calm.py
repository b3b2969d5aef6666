"""CALM: credit assignment with language models (Pignatelli et al. 2024, "Assessing the Zero-Shot
Capabilities of LLMs for Action Evaluation in RL").

The LLM finds the steps of recorded trajectories that achieve the task's subgoals, and those steps
are rewarded. As in the paper:

1. **Subgoals.** The LLM breaks the task into subgoals (``calm_subgoals``: one ``- subgoal``
   bullet a line), once per task: asked at temperature 0 with a fixed seed, so the on-disk cache
   answers every later run. An answer that does not parse is repaired (up to two follow-ups, the
   parse error quoted); if it still does not parse, the task itself is the one subgoal (counted in
   ``subgoals_unparsed``).
2. **Annotation.** Finished episodes are cut into chunks of ``chunk`` steps, one line a step:
   ``time | action | what happened`` (the chunk's own times from 0, the env's action names where it
   has them, the caption the step returned). The LLM (``calm_annotate``) answers with a dict from
   subgoal to the time of the step that achieved it, or ``none``, parsed strictly
   (:func:`parse_annotation`): a malformed answer is counted (``unparsed``) and dropped, a time
   outside the chunk is dropped and counted (``out_of_range``); never an exception.
3. **Reward.** Each annotation counts one for the transition's key, ``(state, action)``: the
   symbolic state *before* the step (``info["state"]`` without its step counter ``steps``, which
   would make every key new) and the action (:func:`transition_key`). Counts are min-max
   normalised over every key of the annotated chunks (most are annotated zero times, so the
   minimum is usually 0; the module keeps a count for each such key) into a table, and a
   transition pays ``beta * table[key]`` (``beta`` = 0.1, the term's ``coef``; unseen keys pay 0).

When it learns: :meth:`CALMBonus.update` receives the transitions since the last update (each
rollout's end for SB3 on-policy agents, every ``update_every`` transitions in gymnasium loops),
keeps the unfinished tail of each episode for the next update (keyed by episode id), and
annotates the episodes that finished, all chunks of an update in one batched call. ``reward``
pays from the table as of the last update. The term is not potential-based (``invariant =
False``): it can change what is optimal.

Adapted: the paper's chunk lines hold a message and an observation; here the env's caption says
both. Each episode is annotated under its own task (``info["task"]``: TextQuest draws a quest per
episode): subgoals are asked per task, and online judgements kept per (task, caption). Annotators:

- the LLM (``llm="hf:default"``, ``openai:...``, or a client object);
- an oracle (``llm=oracle``, or ``oracle(error=p, mode=flip|positive)``,
  :mod:`~align_gym.llm_rewards.oracle`), the upper bound that separates CALM's quality from its
  LLM's, clearly named: it answers from the env's privileged state, in the LLM's answer format.
  Its subgoals are the boolean fields of ``info["state"]`` (a subgoal is achieved at the step
  where the field turns true: KeyDoor's ``has_key`` and ``door_open``) and ``terminated``, the
  episode's termination (reaching the goal in Align's goal tasks). Each of its answers (a
  subgoal's time in a chunk; the subgoal a step achieves) is corrupted at the rate ``p``: a wrong
  time or subgoal, or none where there was one (``flip``), or an achievement where there was none
  (``positive``).

With the embedded SmolLM2-135M the decomposition works (KeyDoor's three subgoals) but the
annotations do not: it echoes the prompt or opens a nested object, every answer is counted as
unparsed and nothing is paid. Serve a larger model (``openai:...``) for CALM itself.

Simplification, ``online=True``: instead of recorded chunks, the LLM judges each new caption as it
arrives ("was a subgoal just achieved?", ``calm_step``, answer ``Subgoal: N`` or ``Subgoal: none``;
cached per caption), and a transition pays 1 (times ``beta``) when its caption is judged to achieve
a subgoal this episode has not achieved yet (a subgoal pays once per episode, as an achieved ELLM
goal does). No table is learned. (The oracle judges the transition's state change instead.)

>>> parse_annotation('{"1": 4, "2": null}', ["pick up the key", "open the door"])
{0: 4}
>>> parse_annotation("none", ["pick up the key", "open the door"])
{}
>>> import gymnasium as gym, align_gym
>>> from align_gym.wrappers import ShapingWrapper
>>> env = gym.make("Align/KeyDoorSubgoals-Episodic-v0")
>>> env = ShapingWrapper(env, make_calm(env, gamma=0.99, llm="oracle"))
>>> _ = env.reset(seed=0)
>>> _, reward, *_, info = env.step(0)
>>> info["reward_terms"]["calm"]  # nothing annotated yet
0.0
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..wrappers.core import EpisodeStarts, RewardModule, TransitionBatch
from .clients import cost_stats, generate_from_template
from .oracle import parse_oracle
from .parsing import ParseError, parse_bullets, parse_choice, parse_json

BETA = 0.1  # the paper's scale of the annotation table in the reward
CHUNK = 16  # steps a chunk
MAX_SUBGOALS = 8
IGNORE = ("steps",)  # state fields left out of the key: the step counter would make every key new
SUBGOAL_TOKENS = 96  # the decomposition's answer budget (a few bullets)
TERMINATED = "terminated"  # the oracle's subgoal of the episode's termination

_ENUMERATED = re.compile(r"^\s*(?:\d+[.)]|\(\d+\))\s+")


# ---- strict parsers ---------------------------------------------------------------------


def parse_subgoals(text: str) -> list[str]:
    """The subgoals of a ``calm_subgoals`` answer: every non-empty line a ``- `` bullet (a number
    after the dash, ``- 1. pick up the key``, is dropped), duplicates dropped, one to
    :data:`MAX_SUBGOALS` of them.

    >>> parse_subgoals("- 1. Pick up the key\\n- open the door")
    ['Pick up the key', 'open the door']
    """
    items: list[str] = []
    for item in parse_bullets(text):
        item = _ENUMERATED.sub("", item).strip()
        if item and item.lower() not in (seen.lower() for seen in items):
            items.append(item)
    if not items:
        raise ParseError("no subgoal in the bullets")
    if len(items) > MAX_SUBGOALS:
        raise ParseError(f"{len(items)} subgoals; give at most {MAX_SUBGOALS}")
    return items


def _bare(line: str) -> str:
    return line.strip().strip("\"'`*_()[]{} \t").rstrip(".").strip("\"'`*_()[]{} \t").lower()


def parse_annotation(text: str, subgoals: Sequence[str]) -> dict[int, int]:
    """A ``calm_annotate`` answer: subgoal index (from 0) -> the time that achieved it.

    The answer is the word ``none`` (its first non-empty line, apart from quotes and a final
    ``.``: nothing achieved), or it holds a JSON object (the first one; text after it is ignored)
    whose keys each name one subgoal, by its number in the prompt (``"1"``) or its text (any
    case), and whose values are whole-number times or ``null`` (not achieved). Rejected: no
    object and no ``none``, an unknown subgoal, a subgoal named twice, a time that is not a
    whole number. Times are not checked against the chunk here: the caller drops and counts
    those outside it.

    >>> parse_annotation('Sure: {"open the door": 7}', ["pick up the key", "open the door"])
    {1: 7}
    >>> try:
    ...     parse_annotation('{"3": 2}', ["pick up the key", "open the door"])
    ... except ParseError as err:
    ...     print(err)
    unknown subgoal '3': give a number from 1 to 2 or a subgoal's text
    """
    if not isinstance(text, str) or not text.strip():
        raise ParseError("the answer is empty")
    first = next(line for line in text.splitlines() if line.strip())
    if _bare(first) == "none":
        return {}
    obj = parse_json(text)
    names = {" ".join(s.lower().split()): i for i, s in enumerate(subgoals)}
    out: dict[int, int] = {}
    for key, value in obj.items():
        name = " ".join(str(key).lower().split())
        if name.isdigit() and 1 <= int(name) <= len(subgoals):
            index = int(name) - 1
        elif name in names:
            index = names[name]
        else:
            raise ParseError(f"unknown subgoal {key!r}: give a number from 1 to {len(subgoals)} or a subgoal's text")
        if index in out:
            raise ParseError(f"subgoal {index + 1} is named twice")
        if value is None or (isinstance(value, str) and _bare(value) == "none"):
            continue
        if isinstance(value, bool) or not isinstance(value, int):
            raise ParseError(f"the time of subgoal {key!r} must be a whole number, got {value!r}")
        out[index] = value
    return out


def parse_step(text: str, n_subgoals: int) -> int | None:
    """A ``calm_step`` answer: the index (from 0) of the subgoal achieved, or None (``none``);
    the first ``Subgoal: <choice>`` counts.

    >>> parse_step("The key is held now.\\nSubgoal: 1", 3), parse_step("Subgoal: none", 3)
    (0, None)
    """
    choice = parse_choice(text, [str(i) for i in range(1, n_subgoals + 1)] + ["none"], key="subgoal")
    return None if choice == "none" else int(choice) - 1


# ---- keys and the table -----------------------------------------------------------------


def _hashable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return tuple(value.ravel().tolist())
    if isinstance(value, (list, tuple)):
        return tuple(_hashable(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, _hashable(v)) for k, v in value.items()))
    return value


def transition_key(state: dict[str, Any], action: Any, ignore: Sequence[str] = IGNORE) -> tuple:
    """The table's key of a transition: the state before the step (its fields sorted, those in
    ``ignore`` left out) and the action.

    >>> transition_key({"x": 1, "steps": 7, "has_key": False}, np.int64(4))
    ((('has_key', False), ('x', 1)), 4)
    """
    return tuple(sorted((k, _hashable(v)) for k, v in state.items() if k not in ignore)), _hashable(action)


def min_max_table(counts: dict[Any, int]) -> dict[Any, float]:
    """``(count - min) / (max - min)`` over every key of ``counts``, zeros left out; where every
    count is equal, 1 for each (none when they are all 0).

    >>> min_max_table({"a": 0, "b": 2, "c": 1})
    {'b': 1.0, 'c': 0.5}
    """
    if not counts:
        return {}
    low, high = min(counts.values()), max(counts.values())
    if high == low:
        return {key: 1.0 for key in counts} if high > 0 else {}
    return {key: (c - low) / (high - low) for key, c in counts.items() if c > low}


# ---- annotators -------------------------------------------------------------------------


def oracle_subgoals(state: dict[str, Any]) -> list[str]:
    """The oracle's subgoals for an env whose state looks like ``state``: its boolean fields, then
    :data:`TERMINATED`."""
    return [k for k, v in sorted(state.items()) if isinstance(v, (bool, np.bool_))] + [TERMINATED]


def oracle_times(steps: Sequence[tuple], subgoals: Sequence[str]) -> dict[int, int]:
    """The oracle's annotation of a chunk: for each subgoal, the first time its boolean field
    turns true (or the episode terminates, for :data:`TERMINATED`)."""
    out: dict[int, int] = {}
    for t, (_, _, _, state, next_state, terminated, *_) in enumerate(steps):
        for i, field in enumerate(subgoals):
            if i in out:
                continue
            if field == TERMINATED:
                achieved = bool(terminated)
            else:
                achieved = bool(next_state.get(field)) and not bool(state.get(field))
            if achieved:
                out[i] = t
    return out


def numbered_subgoals(subgoals: Sequence[str]) -> str:
    """The subgoals as the templates' ``subgoals`` field: ``1. ...`` lines."""
    return "\n".join(f"{i}. {s}" for i, s in enumerate(subgoals, start=1))


def action_names_of(env: Any) -> list[str] | None:
    """The env's names of its discrete actions (its ``action_names``, or the ``ACTION_NAMES`` of
    its class's module, as Align's grid and control envs have), or None."""
    base = getattr(env, "unwrapped", env)
    if hasattr(base, "get_attr"):  # a vector env: ask its first sub-env
        try:
            base = base.get_attr("unwrapped")[0]
        except Exception:  # a sub-env that cannot be sent here: raw actions it is
            return None
    names = getattr(base, "action_names", None)
    if names is None:
        names = getattr(sys.modules.get(type(base).__module__), "ACTION_NAMES", None)
    space = getattr(base, "action_space", None)
    if names is None or getattr(space, "n", None) != len(names):
        return None
    return [str(name) for name in names]


class CALMBonus(RewardModule):
    """CALM's subgoal-annotation reward: ``table[(state, action)]`` in [0, 1]; see the module
    docstring. ``llm``: a client spec, a client object or ``"oracle"``; ``subgoals``: given
    subgoals (no decomposition call); ``action_names``: names of discrete actions for the chunk
    lines (raw actions otherwise)."""

    invariant = False

    def __init__(self, task: str, llm: Any = "hf:default", chunk: int = CHUNK, online: bool = False,
                 action_names: Sequence[str] | None = None, subgoals: Sequence[str] | None = None,
                 max_tokens: int = 48, ignore: Sequence[str] = IGNORE, seed: int = 0, name: str = "calm"):
        if chunk < 1:
            raise ValueError(f"chunk must be at least 1 step, got {chunk}")
        self.task, self.chunk, self.online, self.name = task, int(chunk), bool(online), name
        self.max_tokens = max_tokens
        oracle = parse_oracle(llm)
        self.oracle = oracle is not None
        self.corruption = oracle.corruption(seed) if oracle is not None else None
        self.action_names = list(action_names) if action_names is not None else None
        self.ignore = tuple(ignore)
        self.needs = frozenset({"actions", "captions", "tasks", "states", "next_states", "terminated", "truncated",
                                "episode_ids"})
        self._llm = llm  # a spec is turned into a client on first use: building the module costs nothing
        self._given = list(subgoals) if subgoals is not None else None
        self._subgoals: dict[str, list[str]] = {}  # task -> its subgoals
        self.counts: dict[tuple, int] = {}  # every key of the annotated chunks -> its annotations
        self.table: dict[tuple, float] = {}  # the min-max normalised counts (zeros left out)
        self._pending: dict[int, list[tuple]] = {}  # episode id -> its steps so far, until it ends
        self._judged: dict[tuple[str, str], int | None] = {}  # online: (task, caption) -> subgoal index (None: none)
        self._achieved: dict[int, set[int]] = {}  # online: episode id -> subgoals it has achieved
        self.stats = {"chunks": 0, "annotations": 0, "unparsed": 0, "subgoals_found": 0, "out_of_range": 0,
                      "subgoals_unparsed": 0, "captions_judged": 0}

    # ---- the LLM ------------------------------------------------------------------------

    @property
    def client(self) -> Any:
        if self.oracle:
            return None
        if isinstance(self._llm, str):
            from .clients import get_client

            self._llm = get_client(self._llm)
        return self._llm

    def _generate(self, template: Any, prompts: list, max_tokens: int | None = None) -> list[str]:
        answers = generate_from_template(self.client, prompts, template.key, max_tokens=max_tokens or self.max_tokens,
                                         temperature=0.0, seed=0)
        return [answer for [answer] in answers]

    def subgoals(self, state: dict[str, Any] | None = None, task: str | None = None) -> list[str]:
        """The subgoals of ``task`` (the module's by default): the given ones, else asked of the
        LLM once per task (the oracle's come from ``state``'s fields)."""
        task = task or self.task
        if task not in self._subgoals:
            if self._given is not None:
                self._subgoals[task] = list(self._given)
            elif self.oracle:
                if state is None:
                    raise ValueError("the oracle's subgoals come from a state: pass one")
                self._subgoals[task] = oracle_subgoals(state)
            else:
                self._subgoals[task] = self._ask_subgoals(task)
        return self._subgoals[task]

    def _ask_subgoals(self, task: str) -> list[str]:
        from .parsing import parse_with_repair
        from .prompts import load_template

        template = load_template("calm_subgoals")
        outcome = parse_with_repair(lambda prompts: self._generate(template, prompts, SUBGOAL_TOKENS),
                                    template.render_chat(task=task),
                                    parse_subgoals, answer_format=template.answer_format)
        if outcome.ok:
            return outcome.value
        self.stats["subgoals_unparsed"] += 1
        return [task]  # no usable decomposition: the whole task is the one subgoal

    # ---- reward ---------------------------------------------------------------------------

    def reward(self, batch: TransitionBatch) -> np.ndarray:
        if self.online:
            return self._online_reward(batch)
        return np.array([self.table.get(transition_key(state, action, self.ignore), 0.0)
                         for state, action in zip(batch.states, batch.actions)], dtype=np.float64)

    def _online_reward(self, batch: TransitionBatch) -> np.ndarray:
        out = np.zeros(len(batch))
        tasks = [task or self.task for task in batch.tasks]
        if self.oracle:
            judged = []
            for i in range(len(batch)):
                subgoals = self.subgoals(batch.states[i], tasks[i])
                truth = next(iter(oracle_times([self._step(batch, i)], subgoals)), None)
                others = [k for k in [*range(len(subgoals)), None] if k != truth]
                yes = range(len(subgoals)) if truth is None else [truth]  # achieved: some subgoal, if none was
                judged.append(self.corruption.choice(truth, others, yes))
        else:
            judged = self._judge(list(zip(tasks, batch.captions)))
        for i, subgoal in enumerate(judged):
            episode = int(batch.episode_ids[i])
            achieved = self._achieved.setdefault(episode, set())
            if subgoal is not None and subgoal not in achieved:
                achieved.add(subgoal)
                out[i] = 1.0
                self.stats["subgoals_found"] += 1
            if batch.terminated[i] or batch.truncated[i]:
                self._achieved.pop(episode, None)
        return out

    def _judge(self, items: list[tuple[str, str]]) -> list[int | None]:
        """Online: the subgoal each (task, caption) achieves (None: none or unparsed), asked once
        an item; a step without an event (the empty caption) achieves none."""
        new = [item for item in dict.fromkeys(items) if item not in self._judged and item[1]]
        if new:
            from .prompts import load_template

            template = load_template("calm_step")
            prompts = [template.render_chat(task=task, subgoals=numbered_subgoals(self.subgoals(task=task)), caption=c)
                       for task, c in new]
            for (task, caption), answer in zip(new, self._generate(template, prompts)):
                try:
                    self._judged[task, caption] = parse_step(answer, len(self.subgoals(task=task)))
                except ParseError:
                    self._judged[task, caption] = None
                    self.stats["unparsed"] += 1
            self.stats["captions_judged"] += len(new)
        return [self._judged.get(item) for item in items]

    def start_episodes(self, starts: EpisodeStarts) -> None:
        for episode in starts.episode_ids:
            self._achieved[int(episode)] = set()

    # ---- learning -------------------------------------------------------------------------

    def _step(self, batch: TransitionBatch, i: int) -> tuple:
        """What a chunk keeps of a transition: (key, action text, caption, state, next state,
        terminated, the episode's task)."""
        state, action = batch.states[i], batch.actions[i]
        if self.action_names is not None:
            text = self.action_names[int(action)]
        else:
            text = str(_hashable(action))
        return (transition_key(state, action, self.ignore), text, str(batch.captions[i]), state,
                batch.next_states[i], bool(batch.terminated[i]), batch.tasks[i] or self.task)

    def finished_episodes(self, batch: TransitionBatch) -> list[list[tuple]]:
        """Add ``batch``'s transitions to their episodes; return (and forget) those that ended."""
        finished = []
        for i in range(len(batch)):
            episode = int(batch.episode_ids[i])
            steps = self._pending.setdefault(episode, [])
            steps.append(self._step(batch, i))
            if batch.terminated[i] or batch.truncated[i]:
                finished.append(self._pending.pop(episode))
        return finished

    def annotate(self, chunks: list[list[tuple]]) -> list[str]:
        """The annotator's answer for each chunk, under its episode's task (the oracle answers in
        the LLM's format)."""
        if self.oracle:
            return [self._oracle_annotation(chunk) for chunk in chunks]
        from .prompts import load_template

        template = load_template("calm_annotate")
        prompts = [template.render_chat(task=chunk[0][6], subgoals=numbered_subgoals(self.subgoals(chunk[0][3], chunk[0][6])),
                                        lines="\n".join(f"{t} | {action} | {caption}"
                                                        for t, (_, action, caption, *_) in enumerate(chunk)))
                   for chunk in chunks]
        distinct = list(dict.fromkeys(json.dumps(p) for p in prompts))  # one call per distinct chunk
        answers = dict(zip(distinct, self._generate(template, [json.loads(p) for p in distinct])))
        return [answers[json.dumps(p)] for p in prompts]

    def _oracle_annotation(self, chunk: list[tuple]) -> str:
        """The oracle's answer for one chunk: each subgoal's time, each corrupted on its own."""
        subgoals = self.subgoals(chunk[0][3], chunk[0][6])
        truth = oracle_times(chunk, subgoals)
        times = {}
        for i in range(len(subgoals)):
            right = truth.get(i)
            others = [t for t in [*range(len(chunk)), None] if t != right]
            times[i] = self.corruption.choice(right, others, range(len(chunk)) if right is None else [right])
        return json.dumps({str(i + 1): t for i, t in times.items() if t is not None})

    def count(self, chunk: list[tuple], answer: str) -> None:
        """Add one chunk's annotation to the counts (every key of the chunk is seen, at 0 at least)."""
        for key, *_ in chunk:
            self.counts.setdefault(key, 0)
        try:
            times = parse_annotation(answer, self.subgoals(chunk[0][3], chunk[0][6]))
        except ParseError:
            self.stats["unparsed"] += 1
            return
        self.stats["annotations"] += 1
        for t in times.values():
            if 0 <= t < len(chunk):
                self.counts[chunk[t][0]] += 1
                self.stats["subgoals_found"] += 1
            else:
                self.stats["out_of_range"] += 1

    def update(self, batch: TransitionBatch) -> dict[str, float]:
        """Annotate the episodes that finished (their unfinished tails wait for the next update),
        then renormalise the table; returns the annotation's progress and the LLM's cost."""
        if not self.online:
            chunks = [steps[s:s + self.chunk] for steps in self.finished_episodes(batch)
                      for s in range(0, len(steps), self.chunk)]
            if chunks:
                for chunk, answer in zip(chunks, self.annotate(chunks)):
                    self.count(chunk, answer)
                self.stats["chunks"] += len(chunks)
                self.table = min_max_table(self.counts)
        stats = {k: float(v) for k, v in self.stats.items()}
        stats.update(table_size=float(len(self.table)), keys_seen=float(len(self.counts)),
                     episodes_pending=float(len(self._pending)),
                     subgoals=float(np.mean([len(g) for g in self._subgoals.values()])) if self._subgoals else 0.0)
        if not self.oracle and not isinstance(self._llm, str):
            stats.update(cost_stats(self._llm))
        if self.corruption is not None:
            stats.update({k: float(v) for k, v in self.corruption.stats.items()})
        return stats

    def state_dict(self) -> dict[str, Any]:
        return {"subgoals": {task: list(goals) for task, goals in self._subgoals.items()}, "counts": dict(self.counts),
                "judged": [[task, caption, k] for (task, caption), k in self._judged.items()]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._subgoals = {task: list(goals) for task, goals in state["subgoals"].items()}
        self.counts = dict(state["counts"])
        self._judged = {(task, caption): k for task, caption, k in state.get("judged", [])}
        self.table = min_max_table(self.counts)


def make_calm(env: Any, gamma: float, beta: float = BETA, llm: Any = "hf:default", chunk: int = CHUNK,
              online: bool = False, name: str = "calm", subgoals: Sequence[str] | None = None, max_tokens: int = 48,
              seed: int = 0):
    """The ``calm`` shaping for an env with a task in words and captions (any Align env):
    ``beta * table[(state, action)]``; ``llm="oracle"`` annotates from the env's privileged
    state; ``online=True`` judges each caption as it comes (a stated simplification)."""
    from ..wrappers.intrinsic import make_intrinsic
    from ..wrappers.potential import env_attribute

    task = env_attribute(env, "task")
    if not task:
        raise ValueError("calm needs an env with a task in words (env.unwrapped.task) that captions its steps "
                         "(info['caption']) and reports info['state'], such as an Align env")
    bonus = CALMBonus(task, llm, chunk, online, action_names_of(env), subgoals, max_tokens, seed=seed, name=name)
    return make_intrinsic(bonus, beta, 0.0, False, name)
