"""WebShop's world, generated: a seeded product catalogue, its BM25 index, and instructions.

Products have a type (in a category), a brand, 2 to 4 attributes from their type's pool, options
(colour, size, capacity...: each product offers a subset), a price and a rating. The catalogue of a
``(seed, size)`` is built once per process, with its BM25 index (``bm25s``), and shared read-only by
every env instance (products are frozen dataclasses, lists are tuples).

An instruction is drawn from a target product, as WebShop's are: its type, one or two of its
attributes, one value of each of its option kinds, and a price bound above its price. Any product
that matches all of these scores 1, the target among them; the instruction's own search phrase is
checked to find a full match within the first :data:`MAX_RESULTS` results, so every episode can be
solved.

>>> catalogue = get_catalogue(seed=0, size=1000)
>>> len(catalogue.products), len(catalogue.search("organic cotton t-shirt")) <= MAX_RESULTS
(1000, True)
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

MAX_RESULTS = 50
COLORS = ("black", "white", "red", "blue", "green", "grey", "navy", "pink", "beige", "yellow")
CLOTHING_SIZES = ("xs", "s", "m", "l", "xl", "xxl")
SHOE_SIZES = ("6", "7", "8", "9", "10", "11", "12")
# type -> (category, attribute pool, option kinds and their values)
TYPES: dict[str, tuple[str, tuple[str, ...], dict[str, tuple[str, ...]]]] = {
    "t-shirt": ("clothing", ("cotton", "organic cotton", "polyester", "slim fit", "relaxed fit", "machine washable",
                             "short sleeve", "long sleeve"), {"color": COLORS, "size": CLOTHING_SIZES}),
    "hoodie": ("clothing", ("fleece", "cotton", "zip up", "pullover", "machine washable", "oversized", "lightweight"),
               {"color": COLORS, "size": CLOTHING_SIZES}),
    "jeans": ("clothing", ("stretch", "slim fit", "straight leg", "high waist", "distressed", "denim"),
              {"color": ("blue", "black", "grey", "light blue"), "size": ("28", "30", "32", "34", "36", "38")}),
    "sneakers": ("shoes", ("leather", "mesh", "non slip", "lightweight", "waterproof", "memory foam", "slip on"),
                 {"color": COLORS, "size": SHOE_SIZES}),
    "boots": ("shoes", ("leather", "waterproof", "insulated", "non slip", "ankle", "steel toe"),
              {"color": ("black", "brown", "tan", "grey"), "size": SHOE_SIZES}),
    "backpack": ("bags", ("waterproof", "laptop compartment", "lightweight", "nylon", "leather", "usb charging port",
                          "anti theft"), {"color": COLORS}),
    "tote bag": ("bags", ("canvas", "leather", "zipper", "foldable", "large capacity"), {"color": COLORS}),
    "mug": ("kitchen", ("ceramic", "stainless steel", "insulated", "dishwasher safe", "microwave safe", "with lid"),
            {"color": COLORS, "capacity": ("12 oz", "16 oz", "20 oz")}),
    "water bottle": ("kitchen", ("stainless steel", "insulated", "bpa free", "leak proof", "wide mouth", "with straw"),
                     {"color": COLORS, "capacity": ("16 oz", "24 oz", "32 oz", "40 oz")}),
    "desk lamp": ("home", ("led", "dimmable", "usb charging port", "touch control", "adjustable arm", "eye caring"),
                  {"color": ("black", "white", "silver", "gold")}),
    "pillow": ("home", ("memory foam", "hypoallergenic", "machine washable", "cooling", "down alternative"),
               {"size": ("standard", "queen", "king")}),
    "headphones": ("electronics", ("wireless", "noise cancelling", "bluetooth", "over ear", "foldable",
                                   "long battery life", "with microphone"), {"color": ("black", "white", "blue", "red")}),
    "phone case": ("electronics", ("shockproof", "slim", "silicone", "magnetic", "clear", "with card holder"),
                   {"color": COLORS, "model": ("iphone 15", "iphone 14", "galaxy s24", "pixel 8")}),
    "shampoo": ("beauty", ("sulfate free", "paraben free", "natural", "for dry hair", "vegan", "with argan oil"),
                {"size": ("8 oz", "16 oz", "32 oz")}),
    "face cream": ("beauty", ("fragrance free", "with spf", "hyaluronic acid", "vegan", "for sensitive skin",
                              "anti aging"), {"size": ("1.7 oz", "3.4 oz")}),
}
BRANDS = ("Acme", "Northwind", "Lumen", "Basalt", "Kestrel", "Orla", "Pinecrest", "Tidewater", "Vanta", "Zephyr",
          "Marlow", "Quill", "Redfern", "Sable", "Juniper")
PRICE_RANGE = {"clothing": (9, 60), "shoes": (25, 140), "bags": (15, 90), "kitchen": (6, 40), "home": (12, 80),
               "electronics": (10, 200), "beauty": (5, 45)}


@dataclass(frozen=True)
class Product:
    """One product; ``options`` maps each option kind to the values offered."""

    id: str
    type: str
    category: str
    brand: str
    title: str
    attributes: tuple[str, ...]
    options: tuple[tuple[str, tuple[str, ...]], ...]
    price: float
    rating: float
    description: str

    def option_values(self, kind: str) -> tuple[str, ...]:
        return dict(self.options).get(kind, ())


@dataclass(frozen=True)
class Goal:
    """What an instruction asks for: WebShop's U (type, attributes, options, price bound)."""

    type: str
    category: str
    attributes: tuple[str, ...]
    options: tuple[tuple[str, str], ...]
    price_bound: float
    query: str  # the instruction's own search phrase
    text: str  # the instruction

    def matches(self, product: Product) -> bool:
        """Whether buying ``product`` with this goal's options can score 1."""
        return (product.type == self.type and set(self.attributes) <= set(product.attributes)
                and product.price <= self.price_bound
                and all(value in product.option_values(kind) for kind, value in self.options))


def _product(rng: np.random.Generator, index: int) -> Product:
    type_ = list(TYPES)[int(rng.integers(len(TYPES)))]
    category, pool, option_kinds = TYPES[type_]
    attributes = tuple(sorted(str(a) for a in rng.choice(pool, size=int(rng.integers(2, min(4, len(pool)) + 1)),
                                                         replace=False)))
    options = tuple((kind, tuple(sorted((str(v) for v in rng.choice(values, size=int(rng.integers(
        max(1, len(values) // 2), len(values) + 1)), replace=False)), key=values.index)))
        for kind, values in option_kinds.items())
    low, high = PRICE_RANGE[category]
    price = round(float(rng.uniform(low, high)), 0) - 0.01
    brand = str(rng.choice(BRANDS))
    shown = [str(a) for a in rng.permutation(attributes)[:2]]
    title = f"{brand} {' '.join(shown)} {type_}".replace("  ", " ")
    description = (f"A {', '.join(attributes)} {type_} from {brand}. "
                   f"Available in {', '.join(v for _, values in options for v in values[:3])}.")
    return Product(id=f"b{index:04d}{int(rng.integers(16**5)):05x}", type=type_, category=category, brand=brand,
                   title=title, attributes=attributes, options=options, price=price,
                   rating=round(float(rng.uniform(2.5, 5.0)), 1), description=description)


class Catalogue:
    """Products and their BM25 index; read-only after construction."""

    def __init__(self, seed: int, size: int):
        import bm25s

        if size < len(TYPES) * 10:
            raise ValueError(f"a catalogue needs at least {len(TYPES) * 10} products, got {size}")
        rng = np.random.default_rng(np.random.SeedSequence([seed, size]))
        self.products: tuple[Product, ...] = tuple(_product(rng, i) for i in range(size))
        self.by_id = {p.id: p for p in self.products}
        corpus = [f"{p.title} {p.type} {p.category} {' '.join(p.attributes)}" for p in self.products]
        self._index = bm25s.BM25()
        self._index.index(bm25s.tokenize(corpus, stopwords="en", show_progress=False), show_progress=False)

    def search(self, query: str, limit: int = MAX_RESULTS) -> tuple[Product, ...]:
        """The products best matching ``query`` by BM25, best first (those with a positive score)."""
        import bm25s

        tokens = bm25s.tokenize([query], stopwords="en", show_progress=False, return_ids=False)
        words = [w for w in tokens[0] if w in self._index.vocab_dict]
        if not words:
            return ()
        # Scores for every product, read from the index (pure reads: safe across threads), then the
        # top ones; bm25s's retrieve() starts a thread pool per call, which costs more than the search.
        scores = self._index.get_scores(words)
        best = np.argsort(-scores, kind="stable")[:limit]
        return tuple(self.products[int(i)] for i in best if scores[i] > 0)

    def instruction(self, rng: np.random.Generator) -> Goal:
        """A solvable instruction drawn from ``rng`` (WebShop's recipe; see the module docstring)."""
        while True:
            target = self.products[int(rng.integers(len(self.products)))]
            attributes = tuple(sorted(str(a) for a in rng.choice(target.attributes, size=int(rng.integers(1, 3)),
                                                                 replace=False)))
            options = tuple((kind, str(rng.choice(values))) for kind, values in target.options)
            bound = float(np.ceil(target.price * rng.uniform(1.05, 1.6) / 5) * 5)
            query = f"{' '.join(attributes)} {target.type}"
            wanted = " and ".join(attributes)
            said = ", ".join(f"{kind} {value}" if kind != "color" else value for kind, value in options)
            text = f"i am looking for a {wanted} {target.type} ({said}), and price lower than {bound:.2f} dollars"
            goal = Goal(type=target.type, category=target.category, attributes=attributes, options=options,
                        price_bound=bound, query=query, text=text)
            if any(goal.matches(p) for p in self.search(query)):
                return goal


def score(goal: Goal, product: Product, chosen: dict[str, str]) -> dict[str, float]:
    """WebShop's reward for buying ``product`` with options ``chosen``, in parts that sum to it.

    ``r = r_type * (|U_att & Y_att| + |U_opt & Y_opt| + [price <= bound]) / (|U_att| + |U_opt| + 1)``
    (Yao et al. 2022). Simplified: an attribute matches if the product lists it or its title or
    description holds it verbatim (theirs: fuzzy text similarity); ``r_type`` is 1 for the same
    type, 0.5 for another type of the same category, 0.1 when the title shares a word with the goal
    type, else 0 (theirs compares the query, category and title with similarity thresholds).
    """
    if product.type == goal.type:
        r_type = 1.0
    elif product.category == goal.category:
        r_type = 0.5
    elif set(goal.type.split("-")) & set(product.title.lower().split()):
        r_type = 0.1
    else:
        r_type = 0.0
    text = f"{product.title} {product.description}".lower()
    attributes = sum(a in product.attributes or a in text for a in goal.attributes)
    options = sum(chosen.get(kind) == value for kind, value in goal.options)
    price = float(product.price <= goal.price_bound)
    scale = r_type / (len(goal.attributes) + len(goal.options) + 1)
    return {"attributes": scale * attributes, "options": scale * options, "price": scale * price}


_CACHE: dict[tuple[int, int], Catalogue] = {}
_CACHE_LOCK = threading.Lock()


def get_catalogue(seed: int = 0, size: int = 1000) -> Catalogue:
    """The catalogue of ``(seed, size)``, built on first use and shared by the whole process."""
    with _CACHE_LOCK:
        if (seed, size) not in _CACHE:
            _CACHE[(seed, size)] = Catalogue(seed, size)
        return _CACHE[(seed, size)]
