"""`align-gym serve-env` as a user starts it, read by OpenEnv's own client over a real socket."""

import asyncio
import contextlib
import json
import subprocess
import sys
import textwrap
import time

import httpx
import pytest
from servers import free_port, output, start_cli_server, stop

pytest.importorskip("openenv")
from openenv.core import GenericEnvClient  # noqa: E402
from websockets.exceptions import ConnectionClosed  # noqa: E402
from websockets.sync.client import connect  # noqa: E402

from align_gym.agents.session import EnvSession  # noqa: E402

ENV = "Align/TextQuest-easy-v0"
SHAPING = "pbrs(potential=reference)+count(key=state, scope=episode)"  # two layers, stacked


@pytest.fixture(scope="module")
def server():
    port = free_port()
    process = start_cli_server(["serve-env", "--env", ENV, "--shaping", SHAPING, "--max-concurrent", "8",
                                "--port", str(port)], f"http://127.0.0.1:{port}/health", timeout=60)
    Server.process = process
    yield f"http://127.0.0.1:{port}"
    stop(process)


class Server:
    process = None


IDLE_TIMEOUT = 2


@pytest.fixture(scope="module")
def idle_server():
    """One slot and a short idle timeout: a session that stays quiet must give its slot back."""
    port = free_port()
    process = start_cli_server(["serve-env", "--env", ENV, "--max-concurrent", "1", "--idle-timeout", str(IDLE_TIMEOUT),
                                "--port", str(port)], f"http://127.0.0.1:{port}/health", timeout=60)
    yield f"http://127.0.0.1:{port}"
    stop(process)


def play(turns: list[dict], choose: int) -> str:
    """The action a fixed policy takes: the ``choose``-th admissible action, cycling."""
    valid = turns[-1]["valid_actions"]
    return valid[(choose + len(turns)) % len(valid)]


async def run_sessions(url: str, seeds: list[int], steps: int) -> dict[int, list[dict]]:
    """One OpenEnv client per seed, all open at once, their steps interleaved by the event loop."""

    async def episode(seed: int) -> list[dict]:
        async with GenericEnvClient(base_url=url) as client:
            result = await client.reset(seed=seed)
            turns = [{**result.observation, "reward": result.reward, "done": result.done}]
            for _ in range(steps):
                if turns[-1]["done"]:
                    break
                result = await client.step({"action": play(turns, seed)})
                turns.append({**result.observation, "reward": result.reward, "done": result.done})
                await asyncio.sleep(0)  # let the other sessions step in between
            return turns

    results = await asyncio.gather(*(episode(seed) for seed in seeds))
    return dict(zip(seeds, results))


def test_eight_concurrent_sessions_are_isolated_and_match_the_env_in_process(server):
    seeds = list(range(100, 108))
    served = asyncio.run(run_sessions(server, seeds, steps=12))
    for seed, turns in served.items():
        # The same policy on the same seed, in this process: every field must agree, so no session
        # saw another's state (they all ran at once on one server).
        session = EnvSession(ENV, SHAPING, gamma=1.0)
        local = [session.reset(seed)]
        while len(local) < len(turns):
            local.append(session.step(turn_action(turns, local)))
        session.close()
        assert len(turns) == len(local) > 1
        for remote, here in zip(turns, local):
            assert remote["text"] == here.text
            assert remote["state_hash"] == here.state_hash
            assert remote["valid_actions"] == here.valid_actions
            assert remote["env_reward"] == pytest.approx(here.env_reward)
            assert remote["reward_terms"] == pytest.approx(here.reward_terms)
            assert remote["seed"] == seed
        for remote in turns[1:]:
            assert set(remote["reward_terms"]) == {"pbrs", "count"}
            assert remote["reward"] == pytest.approx(remote["env_reward"] + sum(remote["reward_terms"].values()))
    assert len({turns[0]["state_hash"] for turns in served.values()}) > 1  # different seeds, different episodes


def turn_action(remote: list[dict], local: list) -> str:
    """The action the remote session took at this point (the policy reads only remote turns)."""
    return play(remote[:len(local)], remote[0]["seed"])


def test_malformed_requests_get_errors_and_the_session_goes_on(server):
    ws_url = server.replace("http", "ws") + "/ws"
    with connect(ws_url) as ws:
        for bad in ["{not json", json.dumps({"type": "step", "data": {"actoin": "look"}}),
                    json.dumps({"type": "dance"}), json.dumps({"type": "step", "data": {"action": "look"}})]:
            ws.send(bad)
            answer = json.loads(ws.recv())
            assert answer["type"] == "error" and answer["data"]["message"], bad
        ws.send(json.dumps({"type": "reset", "data": {"seed": 5}}))
        first = json.loads(ws.recv())["data"]
        ws.send(json.dumps({"type": "step", "data": {"action": first["observation"]["valid_actions"][0]}}))
        assert json.loads(ws.recv())["type"] == "observation"
    assert httpx.post(f"{server}/step", content=b"{garbage", headers={"content-type": "application/json"}).status_code == 422
    answer = httpx.post(f"{server}/step", json={"action": {"action": "look"}})
    assert answer.status_code == 409 and "reset first" in answer.json()["detail"]
    assert httpx.get(f"{server}/health").json()["status"] == "healthy"


def test_messages_that_are_not_request_objects_get_errors_and_the_session_goes_on(server):
    deep = "[" * 100_000 + "]" * 100_000  # past Python's recursion limit
    nested = json.dumps({"type": "step", "data": {"action": "look", "note": 0}}).replace("0}", "[" * 500 + "]" * 500 + "}")
    with connect(server.replace("http", "ws") + "/ws") as ws:
        ws.send(json.dumps({"type": "reset", "data": {"seed": 5}}))
        first = json.loads(ws.recv())["data"]["observation"]
        for bad in ["[1, 2]", "null", '"look"', "7", deep, nested, b'{"type": "state"}']:
            ws.send(bad)
            answer = json.loads(ws.recv(timeout=10))
            assert answer["type"] == "error" and answer["data"]["code"] != "SESSION_ERROR", answer
            assert answer["data"]["message"], bad[:20]
        # The same session, its episode untouched: the first admissible action still plays.
        ws.send(json.dumps({"type": "step", "data": {"action": first["valid_actions"][0]}}))
        answer = json.loads(ws.recv(timeout=10))
        assert answer["type"] == "observation" and answer["data"]["observation"]["seed"] == 5


def test_a_client_past_max_concurrent_is_told_why(server):
    ws_url = server.replace("http", "ws") + "/ws"

    async def ninth_session() -> str:
        client = GenericEnvClient(base_url=server)
        await client.connect()
        await asyncio.sleep(0.3)  # the server has answered the handshake by now, as it would for a slow client
        try:
            await client.reset(seed=1)
        except Exception as error:  # noqa: BLE001 (whatever the client raises, its text must say why)
            return f"{type(error).__name__}: {error}"
        finally:
            await client.close()
        return "not refused"

    with contextlib.ExitStack() as stack:
        for _ in range(8):
            ws = stack.enter_context(connect(ws_url))
            ws.send(json.dumps({"type": "reset", "data": {"seed": 1}}))
            assert json.loads(ws.recv())["type"] == "observation"
        refusal = asyncio.run(ninth_session())
        assert "server at capacity: 8 sessions (--max-concurrent)" in refusal, refusal
        with connect(ws_url) as extra:  # a raw client reads the same reason, then the close frame's
            assert json.loads(extra.recv(timeout=10))["data"]["code"] == "CAPACITY_REACHED"
            with pytest.raises(ConnectionClosed) as closed:
                extra.recv(timeout=10)
            assert closed.value.rcvd.code == 1013 and "--max-concurrent" in closed.value.rcvd.reason


def test_idle_sessions_are_closed_with_the_reason_and_free_their_slot(idle_server):
    with connect(idle_server.replace("http", "ws") + "/ws") as ws:
        ws.send(json.dumps({"type": "reset", "data": {"seed": 2}}))
        assert json.loads(ws.recv())["type"] == "observation"
        for _ in range(3):  # busy past the timeout: it is silence that ends a session, not age
            time.sleep(IDLE_TIMEOUT / 2)
            ws.send(json.dumps({"type": "state"}))
            assert json.loads(ws.recv(timeout=10))["type"] == "state"
        start = time.monotonic()
        notice = json.loads(ws.recv(timeout=IDLE_TIMEOUT + 10))
        waited = time.monotonic() - start
        assert notice["type"] == "error" and "--idle-timeout" in notice["data"]["message"], notice
        assert IDLE_TIMEOUT - 0.5 < waited < IDLE_TIMEOUT + 5
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=10)
        assert "--idle-timeout" in closed.value.rcvd.reason
    # Its slot is free: the next client (OpenEnv's own) plays on a server of one slot.
    served = asyncio.run(run_sessions(idle_server, [3], steps=2))
    assert len(served[3]) == 3


def test_clients_that_vanish_mid_episode_free_their_sessions(server):
    # A separate process opens all 8 sessions, steps each once, then dies without closing anything.
    script = textwrap.dedent(f"""
        import json, os
        from websockets.sync.client import connect
        sockets = [connect("{server.replace('http', 'ws')}/ws").__enter__() for _ in range(8)]
        for i, ws in enumerate(sockets):
            ws.send(json.dumps({{"type": "reset", "data": {{"seed": i}}}}))
            first = json.loads(ws.recv())["data"]["observation"]
            ws.send(json.dumps({{"type": "step", "data": {{"action": first["valid_actions"][0]}}}}))
            assert json.loads(ws.recv())["type"] == "observation"
        os._exit(0)
    """)
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)
    # Every slot comes back: 8 new sessions play.
    served = asyncio.run(run_sessions(server, list(range(8)), steps=2))
    assert all(len(turns) == 3 for turns in served.values())
    # And a 9th session beyond capacity is refused with a reason, not left hanging.
    ws_url = server.replace("http", "ws") + "/ws"
    with contextlib.ExitStack() as stack:
        for _ in range(8):
            ws = stack.enter_context(connect(ws_url))
            ws.send(json.dumps({"type": "reset", "data": {"seed": 1}}))
            assert json.loads(ws.recv())["type"] == "observation"
        with connect(ws_url) as extra:
            refusal = json.loads(extra.recv(timeout=30))
            assert refusal["data"]["code"] == "CAPACITY_REACHED"
    assert "Traceback" not in output(Server.process)  # vanished clients are normal, not crashes

def test_serve_env_refuses_a_bad_env_or_spec_at_once():
    for arguments, message in [(["--env", "Align/TolCalc-v0"], "did you mean 'Align/ToolCalc-v0'"),
                               (["--env", "Align/KeyDoor-v0"], "no text actions"),
                               (["--env", ENV, "--shaping", "pbsr"], "did you mean 'pbrs'")]:
        done = subprocess.run([sys.executable, "-m", "align_gym.cli", "serve-env", *arguments],
                              capture_output=True, text=True, timeout=60)
        assert done.returncode != 0 and message in done.stderr, done.stderr


def test_an_idle_timeout_must_be_seconds_or_zero():
    from align_gym.agents.openenv_server import create_server_app

    for bad in [-1.0, float("nan"), float("inf")]:
        with pytest.raises(ValueError, match="idle_timeout is in seconds"):
            create_server_app(ENV, idle_timeout=bad)
