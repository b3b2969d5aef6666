"""The asynchronous annotator: never blocks the caller, dedupes, bounds its queue, survives errors."""

import threading

import gymnasium as gym

import align_gym  # noqa: F401
from align_gym.llm_rewards.annotator import Annotator


class GatedLabeller:
    """A labeller that waits for a gate before each batch, to hold the worker busy on purpose."""

    def __init__(self):
        self.gate = threading.Event()
        self.batches: list[list[str]] = []

    def __call__(self, items):
        self.gate.wait(10)
        self.batches.append(list(items))
        return [item.upper() for item in items]


def test_submit_returns_while_the_worker_is_busy_and_dedupes():
    labeller = GatedLabeller()
    with Annotator(labeller, batch_size=2) as annotator:
        assert annotator.submit(["a", "b", "c"]) == 3
        assert annotator.submit(["a", "c", "d", "d"]) == 1  # only 'd' is new
        assert annotator.pending == 4 and annotator.poll() == {}
        labeller.gate.set()
        assert annotator.wait_idle(10)
        assert annotator.poll() == {"a": "A", "b": "B", "c": "C", "d": "D"}
        assert annotator.submit(["a"]) == 0  # labelled items are not asked again
        assert sorted(x for batch in labeller.batches for x in batch) == ["a", "b", "c", "d"]
        assert annotator.stats.duplicates == 4


def test_full_queue_drops_the_oldest_and_counts_it():
    labeller = GatedLabeller()
    with Annotator(labeller, batch_size=1, max_pending=3) as annotator:
        annotator.submit(["first"])
        while annotator.pending and not annotator._in_flight:  # wait until 'first' is in flight
            pass
        annotator.submit(["x1", "x2", "x3", "x4", "x5"])
        assert annotator.stats.dropped == 2
        labeller.gate.set()
        annotator.wait_idle(10)
        assert set(annotator.labels) == {"first", "x3", "x4", "x5"}


def test_drop_new_policy_keeps_the_queue_as_it_was():
    labeller = GatedLabeller()
    with Annotator(labeller, batch_size=10, max_pending=2, policy="drop_new") as annotator:
        labeller.gate.clear()
        annotator.submit(["a", "b", "c"])
        labeller.gate.set()
        annotator.wait_idle(10)
        assert annotator.stats.dropped == 1 and "c" not in annotator.labels


def test_backend_errors_are_retried_and_counted_never_raised():
    calls = {"n": 0}

    def flaky(items):
        calls["n"] += 1
        if calls["n"] <= 2:
            raise ConnectionError("server went away")
        return [len(i) for i in items]

    with Annotator(flaky, retry_delay=0.01) as annotator:
        annotator.submit(["abc"])
        annotator.wait_idle(10)
        assert annotator.poll() == {"abc": 3} and annotator.stats.errors == 2

    def broken(items):
        raise RuntimeError("always")

    with Annotator(broken, max_retries=1, retry_delay=0.01) as annotator:
        annotator.submit(["x"])
        annotator.wait_idle(10)
        assert annotator.stats.failed == 1 and annotator.labels == {}
        assert annotator.submit(["x"]) == 1  # a failed item may be asked again


def test_unparsed_answers_are_counted():
    with Annotator(lambda items: [None for _ in items]) as annotator:
        annotator.submit(["a", "b"])
        annotator.wait_idle(10)
        assert annotator.stats.unparsed == 2


def test_env_loop_with_the_embedded_model_labelling_captions(embedded):
    """Captions of a real KeyDoor episode, labelled by the real embedded model, arrive later."""
    question = "Does this event help to pick up a key and open a door? Event: {}\nAnswer:"

    def helpful(captions):
        yes = embedded.score([question.format(c) for c in captions], [" yes"] * len(captions))
        no = embedded.score([question.format(c) for c in captions], [" no"] * len(captions))
        return [y[0] > n[0] for y, n in zip(yes, no)]

    env = gym.make("Align/KeyDoor-5x5-v0")
    env.action_space.seed(0)
    _, info = env.reset(seed=0)
    with Annotator(helpful, batch_size=16) as annotator:
        for _ in range(300):
            annotator.submit([info["caption"]])
            _, _, terminated, truncated, info = env.step(env.action_space.sample())
            if terminated or truncated:
                _, info = env.reset()
        assert annotator.wait_idle(120)
        labels = annotator.poll()
    assert len(labels) >= 5 and all(isinstance(v, bool) for v in labels.values())
    assert annotator.stats.labelled == len(labels) and annotator.stats.failed == 0
