"""The on-disk LLM call cache (llm_rewards/cache.py): real SQLite files, real processes, no mocks."""

import doctest
import json
import multiprocessing as mp
import pickle
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time

import pytest

from align_gym.llm_rewards import cache as cache_module
from align_gym.llm_rewards.cache import (
    CACHE_ENV,
    CACHE_MODE_ENV,
    CacheKey,
    CacheMiss,
    LLMCache,
    cache_key,
)

BASE = {
    "backend": "hf",
    "model": "HuggingFaceTB/SmolLM2-135M-Instruct",
    "template": "rate_number",
    "template_version": "1+abcdef12",
    "prompt": "Rate the caption 'You pick up the key.'",
    "params": {"max_tokens": 32, "temperature": 0.1, "n": 1, "stop": ["\n\n"], "seed": 0},
}


def key_for(i, *, model="m", template="t", prompt_prefix="prompt"):
    return cache_key(backend="hf", model=model, template=template, template_version=1,
                     prompt=f"{prompt_prefix} {i}", params={"max_tokens": 8, "seed": i})


def test_doctests():
    result = doctest.testmod(cache_module)
    assert result.attempted > 5 and result.failed == 0


# ---- keys ----------------------------------------------------------------------------------


def test_key_changes_with_every_field_and_not_with_dict_order():
    base = cache_key(**BASE)
    variants = {
        "backend": {"backend": "openai"},
        "model": {"model": "other-model"},
        "template": {"template": "motif_pair"},
        "template_version": {"template_version": "2+abcdef12"},
        "template_text": {"template_version": "1+00000000"},
        "prompt": {"prompt": BASE["prompt"] + " "},
        "prompt_chat": {"prompt": [{"role": "user", "content": BASE["prompt"]}]},
        "temperature": {"params": {**BASE["params"], "temperature": 0.2}},
        "max_tokens": {"params": {**BASE["params"], "max_tokens": 33}},
        "n": {"params": {**BASE["params"], "n": 2}},
        "stop": {"params": {**BASE["params"], "stop": ["\n"]}},
        "seed": {"params": {**BASE["params"], "seed": 1}},
        "continuation": {"params": {**BASE["params"], "continuation": " open door"}},
    }
    keys = {name: cache_key(**{**BASE, **change}) for name, change in variants.items()}
    assert base not in keys.values()
    assert len(set(keys.values())) == len(keys)
    assert all(isinstance(k, str) and len(k) == 64 and int(k, 16) >= 0 for k in keys.values())

    # dict key order never matters, nor the order of the keyword arguments
    reordered = dict(reversed(list(BASE["params"].items())))
    assert cache_key(**{**BASE, "params": reordered}) == base
    chat = [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}]
    chat_reordered = [{"content": m["content"], "role": m["role"]} for m in chat]
    assert cache_key(**{**BASE, "prompt": chat}) == cache_key(**{**BASE, "prompt": chat_reordered})
    nested = {"logit_bias": {"1": 2.0, "3": -1.0}}
    assert cache_key(**{**BASE, "params": nested}) == cache_key(**{**BASE, "params": {"logit_bias": {"3": -1.0, "1": 2.0}}})
    # message order does matter
    assert cache_key(**{**BASE, "prompt": chat}) != cache_key(**{**BASE, "prompt": chat[::-1]})
    # documented normalisations: 1 == 1.0, None params dropped, template_version 1 == "1", tuples == lists
    p = BASE["params"]
    assert cache_key(**{**BASE, "params": {**p, "temperature": 0.1, "seed": 0.0}}) == base
    assert cache_key(**{**BASE, "params": {**p, "top_p": None}}) == base
    assert cache_key(**{**BASE, "params": {**p, "stop": ("\n\n",)}}) == base
    assert cache_key(**{**BASE, "template_version": 3}) == cache_key(**{**BASE, "template_version": "3"})


def test_key_rejects_bad_arguments():
    with pytest.raises(ValueError):
        cache_key(**{**BASE, "backend": ""})
    with pytest.raises(ValueError, match="finite"):
        cache_key(**{**BASE, "params": {"temperature": float("nan")}})
    with pytest.raises(TypeError):
        cache_key(**{**BASE, "prompt": 42})
    with pytest.raises(ValueError, match="prompt message 0"):
        cache_key(**{**BASE, "prompt": [{"role": "user"}]})
    with pytest.raises(TypeError):
        cache_key(**{**BASE, "params": {"x": object()}})


# ---- basic reads and writes ----------------------------------------------------------------


def test_put_get_values_intact_and_metadata_stored(tmp_path):
    started = time.time()
    path = tmp_path / "c.sqlite"
    cache = LLMCache(path)
    gen_key = cache_key(**BASE)
    score_key = cache_key(**{**BASE, "params": {"continuation": " key"}})
    cache.put(gen_key, ["Rating: 7", "Rating: 8"], prompt_tokens=12, completion_tokens=6)
    cache.put(score_key, [[-0.5, -1.25, float("-inf")]])  # log-probs may be -inf
    explicit = cache_key(**{**BASE, "prompt": "other"})
    cache.put(str(explicit), ["ok"], **{**BASE, "prompt": "other"})  # plain-str key + explicit details
    assert cache.get(gen_key) == ["Rating: 7", "Rating: 8"]
    assert cache.get(score_key) == [[-0.5, -1.25, float("-inf")]]
    assert cache.get(str(explicit)) == ["ok"]
    assert cache.get_many([gen_key, "0" * 64, explicit]) == {gen_key: ["Rating: 7", "Rating: 8"], explicit: ["ok"]}
    assert gen_key in cache and "0" * 64 not in cache and len(cache) == 3
    row = sqlite3.connect(path).execute(
        "SELECT backend, model, template, template_version, prompt, params, prompt_tokens, completion_tokens, created "
        "FROM calls WHERE key = ?", (gen_key,)).fetchone()
    assert row[:4] == ("hf", BASE["model"], "rate_number", "1+abcdef12")
    assert json.loads(row[4]) == BASE["prompt"] and json.loads(row[5]) == BASE["params"]
    assert row[6:8] == (12, 6) and started <= row[8] <= time.time()  # stamped when written
    # a second write of a key keeps the first value, and is not an error
    cache.put(gen_key, ["different"])
    assert cache.get(gen_key) == ["Rating: 7", "Rating: 8"]


def test_put_checks_key_against_details(tmp_path):
    cache = LLMCache(tmp_path / "c.sqlite")
    with pytest.raises(ValueError, match="does not match"):
        cache.put(cache_key(**BASE), ["x"], **{**BASE, "model": "another"})
    with pytest.raises(ValueError, match="put needs"):
        cache.put("f" * 64, ["x"])
    assert len(cache) == 0


def test_threads_share_one_instance(tmp_path):
    cache = LLMCache(tmp_path / "c.sqlite")
    errors = []

    def work(t):
        try:
            for i in range(50):
                k = key_for(t * 1000 + i)
                cache.put(k, [f"{t}-{i}"])
                assert cache.get(k) == [f"{t}-{i}"]
        except Exception as err:  # pragma: no cover - reported below
            errors.append(err)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors and len(cache) == 400 and cache.writes == 400 and cache.hits == 400


# ---- many processes ------------------------------------------------------------------------

N_PROCS, N_ROWS, N_SHARED = 8, 200, 20


def _concurrent_writer(path, worker, start, results):
    """Runs in a spawned process: 200 rows of its own plus the shared keys, one transaction each."""
    cache = LLMCache(path)
    start.wait(60)
    rng = random.Random(worker)
    jobs = [("own", i) for i in range(N_ROWS)] + [("shared", i) for i in range(N_SHARED)]
    rng.shuffle(jobs)
    for kind, i in jobs:
        if kind == "own":
            cache.put(key_for(worker * 10_000 + i), [f"worker {worker} row {i}", [0.5 * i, -1.0]])
        else:
            cache.put(key_for(i, prompt_prefix="shared"), [f"shared row {i}"])
    results.put((worker, cache.writes))


def test_eight_processes_writing_at_once_lose_nothing(tmp_path):
    path = str(tmp_path / "shared.sqlite")
    # no file yet: the eight processes also race to create it and its schema
    ctx = mp.get_context("spawn")
    start, results = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=_concurrent_writer, args=(path, w, start, results)) for w in range(N_PROCS)]
    for p in procs:
        p.start()
    start.set()
    writes = dict(results.get(timeout=240) for _ in procs)
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    cache = LLMCache(path, "readonly")
    assert len(cache) == N_PROCS * N_ROWS + N_SHARED
    # each shared key was inserted exactly once, by whichever process came first
    assert sum(writes.values()) == N_PROCS * N_ROWS + N_SHARED
    own = {key_for(w * 10_000 + i): [f"worker {w} row {i}", [0.5 * i, -1.0]] for w in range(N_PROCS) for i in range(N_ROWS)}
    shared = {key_for(i, prompt_prefix="shared"): [f"shared row {i}"] for i in range(N_SHARED)}
    assert cache.get_many(list(own) + list(shared)) == {**own, **shared}
    assert cache.integrity_check() == "ok"


_KILLED_WRITER = r"""
import sys
from align_gym.llm_rewards.cache import LLMCache, cache_key

cache = LLMCache(sys.argv[1])
i = start = int(sys.argv[2])
while True:
    keys = [cache_key(backend="hf", model="m", template="t", template_version=1, prompt=f"row {j}", params={})
            for j in range(i, i + 1 + i % 3)]
    if len(keys) == 1:
        cache.put(keys[0], [f"value {i}"])
    else:
        cache.put_many([{"key": k, "value": [f"value {i + n}"]} for n, k in enumerate(keys)])
    i += len(keys)
    print(i, flush=True)  # rows start .. i-1 are committed
"""


def _run_and_kill(path, start, at_least):
    """Start a writer at row ``start``, SIGKILL it once it reports ``at_least`` rows; rows it reported."""
    proc = subprocess.Popen([sys.executable, "-c", _KILLED_WRITER, path, str(start)], stdout=subprocess.PIPE, text=True)
    reported = start
    try:
        for line in proc.stdout:
            reported = int(line)
            if reported >= start + at_least:
                break
        proc.send_signal(signal.SIGKILL)  # mid-run: it is writing the next rows right now
        proc.wait(30)
        reported = max([reported, *(int(x) for x in proc.stdout.read().split())])
    finally:
        if proc.poll() is None:  # pragma: no cover
            proc.kill()
        proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL and reported >= start + at_least
    return reported


def test_writer_killed_by_sigkill_loses_no_committed_row(tmp_path):
    path = str(tmp_path / "killed.sqlite")
    committed = 0
    for _ in range(3):  # three writers killed in turn, each after a reopen of the file it left
        committed = _run_and_kill(path, committed, 200)
        cache = LLMCache(path)  # reopen: recovers from the WAL the killed process left
        assert cache.integrity_check() == "ok"
        expected = {
            cache_key(backend="hf", model="m", template="t", template_version=1, prompt=f"row {j}", params={}): [f"value {j}"]
            for j in range(committed)
        }
        assert cache.get_many(expected) == expected
        assert len(cache) >= committed
        cache.close()
    cache = LLMCache(path)
    cache.put(key_for(-1), ["after the crashes"])  # the file is writable again
    assert cache.get(key_for(-1)) == ["after the crashes"]


def _forked_child_writes(cache):
    cache.put(key_for(2), ["from the child"])


def test_fork_reopens_connection(tmp_path):
    if "fork" not in mp.get_all_start_methods():
        pytest.skip("no fork on this platform")
    cache = LLMCache(tmp_path / "c.sqlite")
    cache.put(key_for(1), ["parent"])  # the parent's connection is open before the fork
    proc = mp.get_context("fork").Process(target=_forked_child_writes, args=(cache,))
    proc.start()
    proc.join(60)
    assert proc.exitcode == 0
    assert cache.get(key_for(2)) == ["from the child"] and cache.get(key_for(1)) == ["parent"]
    assert cache.integrity_check() == "ok"


def test_pickles_as_its_settings(tmp_path):
    cache = LLMCache(tmp_path / "c.sqlite", timeout=5)
    cache.put(key_for(1), ["x"])
    clone = pickle.loads(pickle.dumps(cache))
    assert (clone.path, clone.mode, clone.timeout, clone.get(key_for(1))) == (cache.path, "readwrite", 5.0, ["x"])
    k = pickle.loads(pickle.dumps(key_for(3)))
    assert isinstance(k, CacheKey) and k == key_for(3) and k.meta == key_for(3).meta


# ---- replay --------------------------------------------------------------------------------


class FakeRandomGenerator:
    """A FAKE model (no LLM): random completions, so only a cache can reproduce them."""

    def __init__(self):
        self.calls = 0

    def __call__(self, prompt, n):
        self.calls += 1
        return [f"Rating: {random.randint(0, 10)} ({random.random():.12f})" for _ in range(n)]


def run_cached(cache, generator, prompts, *, n=2):
    """What a client does: one cache key per call; the model is asked only on a miss."""
    outputs = []
    for prompt in prompts:
        params = {"max_tokens": 16, "temperature": 1.0, "n": n}
        outputs.append(cache.cached_call(lambda p=prompt: generator(p, n), backend="fake", model="fake-random",
                                         template="rate_number", template_version="1+abcdef12",
                                         prompt=prompt, params=params))
    return outputs


def test_replay_reproduces_a_run_exactly(tmp_path):
    path = tmp_path / "run.sqlite"
    prompts = [f"Rate caption {i}" for i in range(20)] + [[{"role": "user", "content": "Rate chat caption"}]]
    recorder = FakeRandomGenerator()
    run1 = run_cached(LLMCache(path, "readwrite"), recorder, prompts)
    assert recorder.calls == len(prompts)
    assert run_cached(LLMCache(path, "readwrite"), recorder, prompts) == run1 and recorder.calls == len(prompts)
    assert run_cached(LLMCache(tmp_path / "other.sqlite"), FakeRandomGenerator(), prompts) != run1  # truly random

    rows_before = len(LLMCache(path, "readonly"))
    replay = LLMCache(path, "replay")
    never = FakeRandomGenerator()
    assert run_cached(replay, never, prompts) == run1
    assert never.calls == 0 and replay.hits == len(prompts) and replay.misses == 0

    with pytest.raises(CacheMiss) as info:
        run_cached(replay, never, ["Rate a caption never seen before, in the replayed run"])
    message = str(info.value)
    for part in ("replay", "backend='fake'", "model='fake-random'", "template='rate_number'",
                 "Rate a caption never seen before", str(path)):
        assert part in message
    # a change of sampling parameters is also a miss
    with pytest.raises(CacheMiss):
        run_cached(replay, never, prompts[:1], n=3)
    with pytest.raises(CacheMiss, match="2 more missing keys"):
        replay.get_many([key_for(1), key_for(2), key_for(3)])
    assert never.calls == 0
    replay.put(key_for(9), ["ignored"])  # replay never writes
    assert len(LLMCache(path, "readonly")) == rows_before
    with pytest.raises(FileNotFoundError):
        LLMCache(tmp_path / "absent.sqlite", "replay")


# ---- modes ---------------------------------------------------------------------------------


def test_readonly_and_off_modes(tmp_path):
    absent = tmp_path / "absent.sqlite"
    ro = LLMCache(absent, "readonly")
    assert ro.get(key_for(1)) is None and len(ro) == 0
    ro.put(key_for(1), ["x"])
    assert not absent.exists()  # never created

    path = tmp_path / "c.sqlite"
    LLMCache(path).put(key_for(1), ["stored"])
    ro = LLMCache(path, "readonly")
    assert ro.get(key_for(1)) == ["stored"]
    assert ro.cached_call(lambda: ["computed"], **key_for(2).meta) == ["computed"]  # computed, not stored
    assert ro.get(key_for(2)) is None and len(ro) == 1
    with pytest.raises(PermissionError):
        ro.clear()
    with pytest.raises(PermissionError):
        ro.import_(tmp_path / "whatever.jsonl")

    off = LLMCache(tmp_path / "off.sqlite", "off")
    off.put(key_for(1), ["x"])
    assert off.get(key_for(1)) is None and off.cached_call(lambda: ["y"], **key_for(1).meta) == ["y"]
    assert off.misses == 2 and off.hits == 0 and not (tmp_path / "off.sqlite").exists()
    assert LLMCache(None, "off").stats()["rows"] == 0
    with pytest.raises(ValueError):
        LLMCache(path, "sometimes")


def test_default_location(tmp_path, monkeypatch):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "sub" / "env.sqlite"))
    monkeypatch.setenv(CACHE_MODE_ENV, "readonly")
    assert LLMCache.default_path() == tmp_path / "sub" / "env.sqlite"
    assert LLMCache.default().mode == "readonly"
    cache = LLMCache.default("readwrite")
    cache.put(key_for(1), ["x"])
    assert (tmp_path / "sub" / "env.sqlite").is_file()
    monkeypatch.delenv(CACHE_ENV)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert LLMCache.default_path() == tmp_path / ".cache" / "align_gym" / "llm_cache.sqlite"


# ---- statistics and artifacts --------------------------------------------------------------


def test_stats_counts(tmp_path):
    cache = LLMCache(tmp_path / "c.sqlite")
    assert cache.stats()["rows"] == 0
    for i in range(3):
        cache.put(key_for(i, model="a", template="rate_number"), [str(i)])
    for i in range(2):
        cache.put(key_for(i, model="b", template="motif_pair"), [str(i)])
    cache.put(key_for(0, model="a", template="rate_number"), ["dup"])  # not a write
    cache.get_many([key_for(i, model="a", template="rate_number") for i in range(5)])  # 3 hits, 2 misses
    cache.get(key_for(0, model="b", template="motif_pair"))  # hit
    stats = cache.stats()
    assert (stats["hits"], stats["misses"], stats["writes"], stats["rows"]) == (4, 2, 5, 5)
    assert stats["hit_rate"] == pytest.approx(4 / 6)
    assert stats["by_group"] == [
        {"backend": "hf", "model": "a", "template": "rate_number", "rows": 3},
        {"backend": "hf", "model": "b", "template": "motif_pair", "rows": 2},
    ]
    assert stats["file_bytes"] > 0 and stats["mode"] == "readwrite"
    assert cache.clear() == 5 and cache.stats()["rows"] == 0


def test_export_then_import_round_trips(tmp_path):
    src = LLMCache(tmp_path / "src.sqlite")
    src.put(cache_key(**BASE), ["Rating: 7"], prompt_tokens=10, completion_tokens=3)
    src.put(cache_key(**{**BASE, "prompt": [{"role": "user", "content": "héllo ✓"}]}), [[-1.0, float("-inf")]])
    for i in range(30):
        src.put(key_for(i), [f"v{i}", {"nested": [i, None, True]}])
    exported = tmp_path / "calls.jsonl"
    assert src.export(exported) == 32
    lines = exported.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 32
    first = json.loads(lines[0])
    assert set(first) == {"key", "backend", "model", "template", "template_version", "prompt", "params", "value",
                          "created", "prompt_tokens", "completion_tokens"}

    dst = LLMCache(tmp_path / "dst.sqlite")
    dst.put(key_for(0), ["v0", {"nested": [0, None, True]}])  # already there: a duplicate
    assert dst.import_(exported) == 31
    assert dst.import_(exported) == 0  # duplicates ignored
    dump = lambda c: sorted(sqlite3.connect(c.path).execute(  # noqa: E731
        "SELECT key, backend, model, template, template_version, prompt, params, value, prompt_tokens, "
        "completion_tokens FROM calls").fetchall())
    assert dump(dst) == dump(src)
    assert dst.export(tmp_path / "again.jsonl") == 32

    # a tampered row (value kept, prompt edited) is refused, and nothing of the file is added
    bad = tmp_path / "bad.jsonl"
    rec = json.loads(lines[-1])
    rec["prompt"] = "edited"
    bad.write_text(lines[0] + "\n" + json.dumps(rec) + "\n", encoding="utf-8")
    fresh = LLMCache(tmp_path / "fresh.sqlite")
    with pytest.raises(ValueError, match="line 2"):
        fresh.import_(bad)
    assert len(fresh) == 0


# ---- exact replay ------------------------------------------------------------------------


def _racer(path, start, results):
    from align_gym.llm_rewards.cache import LLMCache

    cache = LLMCache(path)
    start.wait(30)
    # each process computed its own value for the same call; both must return the stored one
    results.put(cache.cached_call(lambda: f"computed by {mp.current_process().name}", **key_for(7).meta))


def test_two_processes_racing_on_one_key_both_return_the_stored_value(tmp_path):
    path = tmp_path / "race.sqlite"
    LLMCache(path)
    ctx = mp.get_context("spawn")
    start, results = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=_racer, args=(path, start, results), name=f"racer-{i}") for i in range(2)]
    for p in procs:
        p.start()
    time.sleep(1.0)  # both are waiting at the start line
    start.set()
    values = [results.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(30)
    assert values[0] == values[1] == LLMCache(path).get(key_for(7))


def test_sampling_calls_are_drawn_per_occurrence_and_run_and_replayed_in_order(tmp_path, embedded):
    from align_gym.llm_rewards.clients.cached import CachedClient

    path = tmp_path / "runs.sqlite"
    prompt = [{"role": "user", "content": "Name an animal."}]

    def run(run_id, mode="readwrite"):
        client = CachedClient(embedded, LLMCache(path, mode, run_id=run_id))
        samples = [client.generate([prompt], max_tokens=6, temperature=1.0)[0][0] for _ in range(4)]
        greedy = client.generate([prompt], max_tokens=6)[0][0]
        return samples, greedy

    a, greedy_a = run("A")
    b, greedy_b = run("B")
    assert len(set(a)) >= 3  # repeated identical sampling calls draw distinct samples
    assert a != b and greedy_a == greedy_b  # runs sample independently; deterministic calls are shared
    assert run("A", "replay") == (a, greedy_a)  # replay returns each run's samples, in order
    assert run("B", "replay") == (b, greedy_b)
    assert run("A", "off") == (a, greedy_a)  # even without the file: the draws' seeds come from the run id
    with pytest.raises(CacheMiss):
        CachedClient(embedded, LLMCache(path, "replay", run_id="C")).generate([prompt], max_tokens=6, temperature=1.0)
