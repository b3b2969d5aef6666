"""The asynchronous annotator: never blocks the caller, dedupes, bounds its queue, survives errors."""

import functools
import subprocess
import sys
import textwrap
import threading

import gymnasium as gym

import align_gym  # noqa: F401
from align_gym.llm_rewards.annotator import Annotator
from align_gym.llm_rewards.labeller import ProcessLabeller


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


def test_a_raising_callback_is_counted_and_the_worker_lives_on():
    calls = {"n": 0}

    def flaky(items):
        calls["n"] += 1
        if calls["n"] == 1:
            raise ConnectionError("the server went away")
        return [item.upper() for item in items]

    def on_error(error):
        raise RuntimeError("a callback that fails itself")

    with Annotator(flaky, max_retries=2, retry_delay=0.01, on_error=on_error) as annotator:
        annotator.submit(["a"])
        assert annotator.wait_idle(10)
        annotator.submit(["b"])
        assert annotator.wait_idle(10)
        assert annotator.labels == {"a": "A", "b": "B"}
        assert annotator.stats.errors == 1 and annotator.stats.callback_errors == 1


def test_a_hung_thread_labeller_is_abandoned_and_its_batch_retried():
    release = threading.Event()
    calls = {"n": 0}

    def hangs_once(items):
        calls["n"] += 1
        if calls["n"] == 1:
            release.wait(30)  # hangs (until the test ends)
        return [len(item) for item in items]

    with Annotator(hangs_once, label_timeout=0.3, retry_delay=0.01) as annotator:
        annotator.submit(["four"])
        assert annotator.wait_idle(10)
        assert annotator.labels == {"four": 4} and annotator.stats.timeouts == 1
    release.set()


def _slow_labeller_factory(marker_path):
    def label(items):
        import os
        import time

        if not os.path.exists(marker_path):  # the first child hangs; its replacement answers
            open(marker_path, "w").close()
            time.sleep(60)
        return [item * 2 for item in items]

    return label


def test_a_hung_process_labeller_is_restarted_and_its_batch_retried(tmp_path):
    labeller = ProcessLabeller(functools.partial(_slow_labeller_factory, str(tmp_path / "hung")), timeout=2.0)
    with Annotator(labeller, retry_delay=0.01) as annotator:
        annotator.submit([3])
        assert annotator.wait_idle(60)
        assert annotator.labels == {3: 6}
        assert annotator.stats.errors == 1 and labeller.restarts == 1
    labeller.close()


def test_process_labeller_from_an_unguarded_script_and_a_daemonic_process(tmp_path):
    marks = tmp_path / "marks.txt"
    script = tmp_path / "label.py"
    script.write_text(textwrap.dedent(f"""
        import multiprocessing
        from align_gym.llm_rewards import ProcessLabeller
        with open({str(marks)!r}, "a") as fh:
            fh.write("ran\\n")
        def make():  # defined in the script itself: sent by value
            return lambda items: [i + 1 for i in items]
        def in_daemon(queue):
            labeller = ProcessLabeller(make)
            queue.put(labeller([10, 20]))
            labeller.close()
        labeller = ProcessLabeller(make)
        print(labeller([1, 2]))
        labeller.close()
        queue = multiprocessing.get_context("fork").Queue()
        worker = multiprocessing.get_context("fork").Process(target=in_daemon, args=(queue,), daemon=True)
        worker.start()
        print(queue.get(timeout=60))
        worker.join()
    """))
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[:2] == ["[2, 3]", "[11, 21]"]
    assert marks.read_text() == "ran\n"  # the script ran once: no child re-imported it
