"""Text observations as numbers: :class:`TextObservation` over any text env, and its encoders.

``encoder`` is an object with ``encode(texts) -> np.ndarray[n, d]`` and ``dimension``, or a name of
:data:`ENCODERS`: ``"hashing"`` (the default: :class:`HashingEncoder`, no model, no download) or
``"minilm"`` (the embedded sentence encoder, all-MiniLM-L6-v2, from the ``[llm]`` extra). Names
resolve to ``"module:attribute"`` paths imported on first use, so this module imports nothing of
the LLM layer.
"""

from __future__ import annotations

import importlib
import re
import zlib
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

ENCODERS: dict[str, str] = {
    "hashing": "align_gym.wrappers.text:HashingEncoder",
    "minilm": "align_gym.llm_rewards.encoder:shared_encoder",
}
_WORD = re.compile(r"[a-z0-9]+|[-+*/=<>]")  # words, numbers and the operators tool calls use


class HashingEncoder:
    """Words and word pairs of each line, hashed into ``dimension`` signed buckets (the hashing
    trick, Weinberger et al. 2009), L2-normalised.

    Each token is also tagged with its line's first two words, so "You see: a key" and "You carry:
    a key" differ. CRC32 makes the hash stable across processes (Python's ``hash`` is salted).

    >>> encoder = HashingEncoder(dimension=64)
    >>> a, b, c = encoder.encode(["You carry: a brass key.", "You carry: a brass key.", "You see: a brass key."])
    >>> float(a @ b), round(float(a @ c), 2) < 1.0
    (1.0, True)
    """

    def __init__(self, dimension: int = 1024):
        self.dimension = dimension
        self._memo: dict[str, np.ndarray] = {}

    def _tokens(self, text: str) -> list[str]:
        tokens = []
        for line in text.lower().splitlines():
            words = _WORD.findall(line)
            field = " ".join(words[:2])
            tokens += words + [f"{a} {b}" for a, b in zip(words, words[1:])] + [f"{field}|{w}" for w in words[2:]]
        return tokens

    def _encode_one(self, text: str) -> np.ndarray:
        vector = np.zeros(self.dimension, dtype=np.float32)
        for token in self._tokens(text):
            code = zlib.crc32(token.encode())
            vector[code % self.dimension] += 1.0 if code & 0x80000000 else -1.0
        norm = float(np.linalg.norm(vector))
        return vector / norm if norm else vector

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        out = np.empty((len(texts), self.dimension), dtype=np.float32)
        for i, text in enumerate(texts):
            if text not in self._memo:  # observations recur: encode each distinct one once
                if len(self._memo) > 100_000:
                    self._memo.clear()
                self._memo[text] = self._encode_one(text)
            out[i] = self._memo[text]
        return out


def resolve_encoder(encoder: str | Any) -> Any:
    """An encoder object from a name of :data:`ENCODERS` (or the object itself)."""
    if not isinstance(encoder, str):
        return encoder
    if encoder not in ENCODERS:
        raise ValueError(f"unknown encoder {encoder!r}; choose one of {', '.join(ENCODERS)} or pass an object "
                         "with encode(texts) and dimension")
    module_name, _, attribute = ENCODERS[encoder].partition(":")
    return getattr(importlib.import_module(module_name), attribute)()


class TextObservation(gym.ObservationWrapper):
    """Replaces a text env's observation string by its encoding: a ``Box`` vector SB3 can take.

    >>> import gymnasium as gym, align_gym
    >>> env = TextObservation(gym.make("Align/TextQuest-easy-v0"))
    >>> obs, info = env.reset(seed=0)
    >>> obs.shape, env.observation_space.contains(obs)
    ((1024,), True)
    """

    def __init__(self, env: gym.Env, encoder: str | Any = "hashing"):
        super().__init__(env)
        if not isinstance(env.observation_space, spaces.Text):
            raise ValueError(f"TextObservation needs a text observation space, got {env.observation_space}")
        self.encoder = resolve_encoder(encoder)
        self.observation_space = spaces.Box(-1.0, 1.0, shape=(int(self.encoder.dimension),), dtype=np.float32)

    def observation(self, observation: str) -> np.ndarray:
        return np.clip(self.encoder.encode([observation])[0], -1.0, 1.0).astype(np.float32)
