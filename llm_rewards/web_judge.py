"""A web judge: an LLM rates each page the agent reaches for progress on its instruction, and the
rating is paid as a per-step reward. After the judges of WebRL (Qi et al. 2024, an outcome reward
model over the final page) and WebArbiter (a process reward model over each step).

The judge reads the page as the agent sees it (the text observation, which carries the
instruction) with the ``web_progress`` template and answers 0 to 10; the term is
``coef * rating / 10`` on every step, for the page the step reached. Unparsed answers pay 0 and
are counted. Every call goes through the LLM cache, and each distinct page is judged once per run
(a page shown again reuses its rating), so a run replays exactly from its cache.

Not invariant: a rating paid every step rewards staying on pages the judge likes; that is what
these papers' judges do, and what ``align-gym llm judge-check --template web_progress`` measures
the judge for (master keys in place of the page, and pages of progress against others).

Simplified: one judge call per distinct page, at temperature 0, where the papers trained their
reward models (WebRL) or sampled several judgements (WebArbiter).

An oracle judge (``llm=oracle`` or ``oracle(error=p, mode=flip|positive)``,
:mod:`~align_gym.llm_rewards.oracle`) rates a page from the privileged state it shows: ten times
the env's ``reference`` potential, rounded; each rating corrupted at the rate ``p`` (another rating
at random under ``flip``, the top rating under ``positive``), once per page.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ..wrappers.core import RewardModule, TransitionBatch
from .clients import cost_stats, generate_from_template
from .oracle import parse_oracle
from .parsing import ParseError, parse_number


class WebJudge(RewardModule):
    """Pays ``coef * rating / 10`` for each page reached; see the module docstring."""

    invariant = False
    needs = frozenset({"next_obs"})

    def __init__(self, task: str, llm: str | Any = "hf:default", coef: float = 0.1, name: str = "web_judge",
                 max_tokens: int = 160, progress: Callable[[dict], float] | None = None, seed: int = 0):
        """``progress``: the env's reference potential, which an oracle ``llm`` rates from."""
        from .prompts import load_template

        self.task, self.llm, self.coef, self.name, self.max_tokens = task, llm, coef, name, max_tokens
        oracle = parse_oracle(llm)
        if oracle is not None and progress is None:
            raise ValueError("the web judge's oracle rates pages by the env's 'reference' potential: this env has none")
        self.corruption, self.progress = (oracle.corruption(seed) if oracle is not None else None), progress
        if oracle is not None:
            self.needs = frozenset({"next_obs", "next_states"})
        self.template = load_template("web_progress")
        self._client = llm if not isinstance(llm, str) else None
        self.ratings: dict[str, float | None] = {}  # page -> rating (None: the answer did not parse)

    @property
    def client(self) -> Any:
        if self._client is None:  # loaded on first use: building the env stays cheap
            from .clients import get_client

            self._client = get_client(self.llm)
        return self._client

    def judge(self, pages: list[str]) -> list[float | None]:
        """The rating of each page in [0, 10] (None where the answer did not parse)."""
        fresh = [page for page in dict.fromkeys(pages) if page not in self.ratings]
        if fresh:
            prompts = [self.template.render_chat(task=self.task, page=page) for page in fresh]
            answers = generate_from_template(self.client, prompts, self.template.key, max_tokens=self.max_tokens,
                                             temperature=0.0)
            for page, [answer] in zip(fresh, answers):
                try:
                    self.ratings[page] = float(parse_number(answer, 0, 10))
                except ParseError:
                    self.ratings[page] = None
        return [self.ratings[page] for page in pages]

    def oracle_judge(self, pages: list[str], states: list[dict]) -> list[float]:
        """The oracle's rating of each page: 10 x the reference potential of its state, corrupted once a page."""
        for page, state in zip(pages, states):
            if page not in self.ratings:
                truth = int(np.clip(round(10 * self.progress(state)), 0, 10))
                self.ratings[page] = float(self.corruption.choice(truth, [r for r in range(11) if r != truth], [10]))
        return [self.ratings[page] for page in pages]

    def reward(self, batch: TransitionBatch) -> np.ndarray:
        pages = [str(page) for page in batch.next_obs]
        ratings = self.judge(pages) if self.corruption is None else self.oracle_judge(pages, list(batch.next_states))
        return np.array([self.coef * (r or 0.0) / 10.0 for r in ratings])

    def update(self, batch: TransitionBatch) -> dict[str, float]:
        unparsed = sum(r is None for r in self.ratings.values())
        oracle = {k: float(v) for k, v in self.corruption.stats.items()} if self.corruption is not None else {}
        return {"pages_judged": float(len(self.ratings)), "unparsed": float(unparsed), **oracle,
                **cost_stats(self._client)}


def make_web_judge(env: Any, gamma: float, coef: float = 0.1, llm: str = "hf:default",
                   seed: int = 0, name: str = "web_judge") -> WebJudge:
    """The ``web_judge`` shaping; ``env`` must show text pages (a web env's text id)."""
    from gymnasium import spaces

    space = getattr(env, "single_observation_space", None) or env.observation_space
    if not isinstance(space, spaces.Text):
        raise ValueError(f"web_judge reads the page text, but this env's observations are {space}: "
                         "use the text id (Align/WebShop-v0), not its -Choice view")
    base = getattr(env, "unwrapped", env)
    # The task in general words (the episode's instruction is on every page the judge reads).
    task = getattr(type(base), "task", "") or (base.get_attr("task")[0] if hasattr(base, "get_attr") else "")
    if not task:
        raise ValueError("web_judge needs an env with a task in words (env.unwrapped.task)")
    from ..wrappers.potential import named_potentials

    return WebJudge(str(task), llm, coef, name, progress=named_potentials(env).get("reference"), seed=seed)
