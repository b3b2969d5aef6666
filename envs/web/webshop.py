"""WebShop (Yao et al. 2022) with pip alone: a generated shop, WebShop's pages, actions and score.

Each episode draws an instruction ("i am looking for a waterproof backpack (navy), and price lower
than 60.00 dollars") from a seeded catalogue of at least 1,000 products
(:mod:`~align_gym.envs.web.catalogue`). The agent searches, pages through the results, opens a
product, chooses its options and buys:

- ``search[query]`` on the search page (BM25 over titles, types and attributes; 10 results a page,
  at most 50);
- ``click[label]`` on anything in brackets: a product id, ``next >``, ``< prev``,
  ``back to search``, an option value, ``description``, ``features``, ``buy now``.

Buying ends the episode with WebShop's score (:func:`~align_gym.envs.web.catalogue.score`), its
parts in ``info["reward_parts"]`` (attributes, options, price; they sum to the reward); success is
a score of 1. The observation is the page as text, or as simplified HTML with
``observation="html"``; the instruction heads every page. ``info["valid_actions"]`` lists the
clicks on the page and, on the search page, a fixed set of searches: the instruction's own phrase
and one per product type. Any other query is allowed too.

>>> import gymnasium as gym, align_gym
>>> env = gym.make("Align/WebShop-v0")
>>> obs, info = env.reset(seed=0)
>>> print(obs.splitlines()[2])
[search box]
>>> info["valid_actions"][0]
'search[leather lightweight sneakers]'
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..core import State
from ..text.core import Outcome, TextEnv, quote
from .catalogue import MAX_RESULTS, TYPES, Catalogue, Goal, Product, get_catalogue, score
from .pages import ActionError, Element, Page, Text, parse_action

PER_PAGE = 10


def reference_potential(state: State) -> float:
    """Staged progress: a matching product in sight, opened, and each right option chosen."""
    if state["item_matches"]:
        return 0.4 + 0.5 * state["options_right"] / max(1, state["options_needed"])
    return 0.2 if state["matches_shown"] else 0.0


def distance_potential(state: State) -> float:
    """Minus the clicks still needed on the shortest way to a full-score purchase."""
    finish = state["options_needed"] - state["options_right"] + 1  # the options left, then buy
    if state["item_matches"]:
        return -float(finish + (state["page"] == "detail"))
    if state["page"] == "results" and state["matches_shown"]:
        return -float(1 + finish)
    back = {"search": 0, "results": 1, "item": 2, "detail": 3, "bought": 0}[state["page"]]
    return -float(back + 2 + finish)  # back to search, search, open, then finish


class WebShopEnv(TextEnv):
    """A shopping task in a generated WebShop; see the module docstring."""

    task = "Find and buy the product the instruction describes, with its options, under its price bound."
    state_schema = {
        "page": "search, results, item, detail or bought",
        "query": "the search whose results are shown or one click away ('' on the search page)",
        "results_page": "which page of those results (0-based; 0 on the search page)",
        "item": "the open product's id, or ''",
        "detail": "which part of the product the detail page shows (description or features), or ''",
        "chosen": "the options chosen on the product page, 'kind=value' comma-separated",
        "item_matches": "whether the open product can score 1 (type, attributes, price, options offered)",
        "matches_shown": "how many products on this results page can score 1",
        "options_right": "how many of the instruction's options are chosen",
        "options_needed": "how many options the instruction names",
        "steps": "steps taken in this episode",
    }
    potentials = {"reference": reference_potential, "distance": distance_potential}
    _shared_on_copy = TextEnv._shared_on_copy | {"catalogue", "goal", "results"}

    @classmethod
    def task_of(cls, **_: Any) -> str:
        return "WebShop: search a generated catalogue of 1,000+ products and buy what the instruction asks for."

    def __init__(self, catalogue_seed: int = 0, catalogue_size: int = 1000, observation: str = "text",
                 max_steps: int = 20, render_mode: str | None = None):
        if observation not in ("text", "html"):
            raise ValueError(f"observation must be 'text' or 'html', got {observation!r}")
        super().__init__(max_steps, render_mode)
        self.catalogue: Catalogue = get_catalogue(catalogue_seed, catalogue_size)
        self.observation = observation
        self.goal: Goal | None = None

    # -- the world ------------------------------------------------------------------------
    def _new_episode(self, rng: np.random.Generator) -> str:
        self.goal = self.catalogue.instruction(rng)
        self.task = self.goal.text
        self.page_kind, self.query, self.results, self.results_page = "search", "", (), 0
        self.item: Product | None = None
        self.chosen: dict[str, str] = {}
        self._shown_page: Page | None = None
        return "You are on the search page."

    def page(self) -> Page:
        """The current page, built once per state: a step reads it three times (the click, the
        observation, the valid actions), and only :meth:`_act` changes it."""
        if self._shown_page is None:
            self._shown_page = self._build_page()
        return self._shown_page

    def _build_page(self) -> Page:
        head = [Text(f"Instruction: {self.goal.text}")]
        if self.page_kind == "search":
            return Page("WebShop", [*head, Element("search", "search")])
        back = Element("button", "Back to Search")
        if self.page_kind == "results":
            shown = self._shown()
            parts = [*head, back, Text(f"Page {self.results_page + 1} (total results: {len(self.results)})")]
            if self.results_page > 0:
                parts.append(Element("button", "< Prev"))
            if (self.results_page + 1) * PER_PAGE < len(self.results):
                parts.append(Element("button", "Next >"))
            for product in shown:
                parts += [Element("link", product.id), Text(f"{product.title} | ${product.price:.2f}")]
            if not shown:
                parts.append(Text("No products match your search."))
            return Page("WebShop: results", parts)
        item = self.item
        if self.page_kind == "bought":
            chosen = ", ".join(self.chosen.values()) or "no options"
            return Page("WebShop: thank you", [*head, Text(f"You bought {item.title} ({chosen}) "
                                                              f"for ${item.price:.2f}."), Text(f"Your score: {self.score:.2f}")])
        if self.page_kind == "detail":
            body = item.description if self.detail == "description" else "Features: " + ", ".join(item.attributes)
            return Page(f"WebShop: {self.detail}", [*head, back, Element("button", "< Prev"), Text(body)])
        parts = [*head, back, Element("button", "< Prev"), Text(item.title),
                 Text(f"Price: ${item.price:.2f}  Rating: {item.rating}")]
        for kind, values in item.options:
            parts.append(Text(f"{kind}:"))
            parts += [Element("choice", value, selected=self.chosen.get(kind) == value) for value in values]
        parts += [Element("button", "Description"), Element("button", "Features"), Element("button", "Buy Now")]
        return Page("WebShop: item", parts)

    def _shown(self) -> tuple[Product, ...]:
        start = self.results_page * PER_PAGE
        return self.results[start:start + PER_PAGE]

    # -- actions --------------------------------------------------------------------------
    def _act(self, command: str) -> Outcome:
        try:
            verb, argument = parse_action(command)
            if verb == "search":
                outcome = self._search(argument)
            elif verb == "click":
                outcome = self._click(argument)
            else:
                raise ActionError(f"WebShop has no {verb}[...]: use search[query] or click[label].")
        except ActionError as error:
            return Outcome(str(error), valid=False)  # nothing changed: the page stands
        self._shown_page = None
        return outcome

    def _search(self, query: str) -> Outcome:
        if self.page_kind != "search":
            raise ActionError("There is no search box on this page: click[Back to Search] first.")
        if not query:
            raise ActionError("Search for something: search[words].")
        self.query, self.results, self.results_page = query[:200], self.catalogue.search(query, MAX_RESULTS), 0
        self.page_kind = "results"
        return Outcome("You search the shop.")

    def _click(self, label: str) -> Outcome:
        page = self.page()
        element = page.find(("button", "link", "choice"), label)
        if element is None:
            options = ", ".join(page.clickables()[:12]) or "nothing (search instead)"
            raise ActionError(f"Nothing to click called {quote(label)} here; clickable: {options}.")
        name = element.label.lower()
        if name == "back to search":
            self.page_kind, self.item, self.chosen = "search", None, {}
            return Outcome("You go back to the search page.")
        if self.page_kind == "results":
            if name in ("next >", "< prev"):
                self.results_page += 1 if name == "next >" else -1
                return Outcome("You turn a page of results.")
            self.item, self.chosen, self.page_kind = self.catalogue.by_id[element.label], {}, "item"
            return Outcome("You open a product page.")
        if self.page_kind == "detail":  # only < prev is left
            self.page_kind = "item"
            return Outcome("You go back to the product page.")
        if name == "< prev":
            self.page_kind, self.item, self.chosen = "results", None, {}
            return Outcome("You go back to the results.")
        if name in ("description", "features"):
            self.page_kind, self.detail = "detail", name
            return Outcome(f"You read the product's {name}.")
        if name == "buy now":
            parts = score(self.goal, self.item, self.chosen)
            reward = sum(parts.values())
            self.page_kind, self.score = "bought", reward
            return Outcome(f"You buy the product. Your score is {reward:.2f}.", reward=reward, terminated=True,
                           success=reward >= 1.0 - 1e-9, reward_parts=parts)
        kind = next(kind for kind, values in self.item.options if element.label in values)
        self.chosen[kind] = element.label
        return Outcome("You choose an option.")

    # -- what the agent sees ----------------------------------------------------------------
    def _observe(self, message: str) -> str:
        page = self.page()
        return page.html() if self.observation == "html" else page.text()

    def valid_actions(self) -> list[str]:
        page = self.page()
        if self.page_kind == "bought":
            return []
        if self.page_kind == "search":
            searches = [self.goal.query] + [t for t in TYPES if t != self.goal.query]
            return [f"search[{query}]" for query in searches]
        return [f"click[{part.label}]" for part in page.parts
                if isinstance(part, Element) and part.kind in ("button", "link", "choice") and not part.selected]

    def symbolic_state(self) -> State:
        goal, item = self.goal, self.item
        on_item = item is not None and self.page_kind in ("item", "detail", "bought")
        # What the page shows and what the next action can change, nothing that lingers: on the
        # search page a new search replaces the last query, so the last query is not state there.
        searching = self.page_kind == "search"
        return {
            "page": self.page_kind, "query": "" if searching else self.query,
            "results_page": 0 if searching else self.results_page,
            "item": item.id if on_item else "",
            "detail": self.detail if self.page_kind == "detail" else "",
            "chosen": ",".join(f"{k}={v}" for k, v in sorted(self.chosen.items())),
            "item_matches": bool(on_item and goal.matches(item)),
            "matches_shown": sum(goal.matches(p) for p in self._shown()) if self.page_kind == "results" else 0,
            "options_right": sum(self.chosen.get(kind) == value for kind, value in goal.options) if on_item else 0,
            "options_needed": len(goal.options),
        }


def scripted_shopper(env: WebShopEnv) -> list[str]:
    """A shopper that reads the instruction (``env.goal``) and the pages: search the instruction's
    phrase, open results in order until one fits, choose the asked options, buy. It plays on
    ``env`` (already reset) and returns the actions it took."""
    actions: list[str] = []

    def act(action: str) -> None:
        actions.append(action)
        env.step(action)

    goal = env.goal
    act(env.valid_actions()[0])  # the instruction's own search
    while True:
        for product in env._shown():
            if goal.matches(product):
                act(f"click[{product.id}]")
                for _, value in goal.options:
                    act(f"click[{value}]")
                act("click[Buy Now]")
                return actions
        if "click[Next >]" not in env.valid_actions():
            return actions
        act("click[Next >]")
