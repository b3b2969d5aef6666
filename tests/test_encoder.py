"""The embedded sentence encoder tells captions apart, and the cache embeds each caption once."""

import numpy as np
import pytest

from align_gym.llm_rewards.cache import LLMCache
from align_gym.llm_rewards.encoder import SentenceEncoder


@pytest.fixture(scope="module")
def encoder(tmp_path_factory):
    return SentenceEncoder(cache=LLMCache(tmp_path_factory.mktemp("enc") / "cache.sqlite"))


def test_similar_captions_are_closer_than_different_ones(encoder):
    sims = encoder.similarity(["You pick up the key."], ["You take the key.", "The door is locked.", "You move left."])[0]
    assert sims[0] > sims[1] + 0.1 and sims[0] > sims[2] + 0.1
    vectors = encoder.encode(["a", "b"])
    assert vectors.shape == (2, 384) and np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)


def test_each_caption_is_embedded_once_per_cache(encoder):
    captions = ["You unlock the door with the key.", "You reach the goal.", "You unlock the door with the key."]
    first = encoder.encode(captions)
    misses = encoder.misses
    again = encoder.encode(captions)
    assert encoder.misses == misses and np.array_equal(first, again)
    assert np.array_equal(first[0], first[2])


def test_an_embedding_depends_on_its_text_alone_not_on_the_texts_beside_it(tmp_path):
    """The bench's parallel cells fill one cache in different orders: a caption embedded among
    others (where batching would change its last bits) must equal the same caption embedded alone."""
    captions = ["You move up.", "You pick up the key.", "The door is locked and you have no key.",
                "You unlock the door with the key."]
    together = SentenceEncoder().encode(captions)
    alone = np.stack([SentenceEncoder().encode([caption])[0] for caption in reversed(captions)][::-1])
    assert np.array_equal(together, alone)
    cached = SentenceEncoder(cache=LLMCache(tmp_path / "cache.sqlite"))
    cached.encode(captions[1:3])
    assert np.array_equal(SentenceEncoder(cache=cached.cache).encode(captions), together)
