import os

# Tests run side by side with nothing else: one thread each keeps torch from oversubscribing.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def embedded():
    """The embedded SmolLM2-135M-Instruct, loaded once per test session (no cache layer)."""
    from align_gym.llm_rewards.clients.transformers_backend import TransformersClient

    return TransformersClient("default")
