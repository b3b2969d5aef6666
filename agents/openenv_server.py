"""Align text and tool envs as an OpenEnv environment server (``align-gym serve-env``).

TRL, SkyRL, ART, Unsloth and NeMo Gym read OpenEnv servers; this one is OpenEnv's own server
(``openenv.core.env_server.create_app``) around an :class:`~align_gym.agents.session.EnvSession`,
with no protocol of our own:

- each WebSocket session (what OpenEnv's clients open) gets its own env instance, up to
  ``max_concurrent`` at once; a client that disconnects frees its slot, and so does one silent for
  ``idle_timeout`` seconds; a client past ``max_concurrent`` is told why (:class:`SessionGuard`);
- a malformed message gets an error reply and the session goes on;
- an action is ``{"action": "<text>"}``; ``reset`` takes ``seed``;
- an observation carries ``text``, ``valid_actions``, ``state_hash``, ``env_reward`` and
  ``reward_terms`` (plus ``truncated``, ``action_valid``, ``invalid_action``, ``success`` and
  ``seed``); the step's ``reward`` is the task reward plus the terms.

Many sessions per server and servers on many machines are how Align envs scale past one process.

>>> env = AlignEnvironment("Align/ToolCalc-v0", shaping="pbrs(potential=reference)")
>>> first = env.reset(seed=0)
>>> after = env.step(TextAction(action=first.valid_actions[1]))
>>> after.reward == after.env_reward + sum(after.reward_terms.values())
True
>>> env.close()
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import math
from typing import Any

from openenv.core.env_server import Action, Environment, Observation, State, create_app
from pydantic import Field

from ..wrappers.registry import SpecLike
from .session import EnvSession, EpisodeError, Turn


class TextAction(Action):
    """One command or tool call, as text."""

    action: str = Field(..., description="a command (text games) or a JSON tool call (tool tasks)")


class AlignObservation(Observation):
    """What a reset or step shows; ``reward`` (OpenEnv's field) is ``env_reward`` plus the terms."""

    text: str = Field(..., description="the observation text")
    valid_actions: list[str] = Field(default_factory=list, description="admissible commands or calls")
    state_hash: str = Field("", description="a hash of the symbolic state (equal states, equal hashes)")
    env_reward: float = Field(0.0, description="the task reward of the step")
    reward_terms: dict[str, float] = Field(default_factory=dict, description="each shaping term of the step")
    truncated: bool = Field(False, description="whether the episode was cut by the step limit (done is true too)")
    action_valid: bool = Field(True, description="whether the env accepted the action")
    invalid_action: str | None = Field(None, description="why the action was refused")
    success: bool | None = Field(None, description="whether the task was achieved (at the episode's end)")
    seed: int | None = Field(None, description="the episode's seed")


class AlignEnvironment(Environment[TextAction, AlignObservation, State]):
    """One session's env: an :class:`EnvSession` behind OpenEnv's ``Environment`` interface."""

    SUPPORTS_CONCURRENT_SESSIONS = True  # every session builds its own env and shaping modules

    def __init__(self, env_id: str, shaping: SpecLike = "none", gamma: float = 1.0, **env_kwargs: Any):
        super().__init__()
        self.session = EnvSession(env_id, shaping, gamma=gamma, **env_kwargs)
        self._state = State(episode_id=None, step_count=0)

    def reset(self, seed: int | None = None, episode_id: str | None = None, **kwargs: Any) -> AlignObservation:
        turn = self.session.reset(seed)
        self._state = State(episode_id=episode_id or f"seed-{self.session.seed}", step_count=0)
        return self._observation(turn)

    def step(self, action: TextAction, timeout_s: float | None = None, **kwargs: Any) -> AlignObservation:
        turn = self.session.step(action.action)
        self._state.step_count += 1
        return self._observation(turn)

    @property
    def state(self) -> State:
        return self._state

    def close(self) -> None:
        self.session.close()

    def _observation(self, turn: Turn) -> AlignObservation:
        return AlignObservation(
            text=turn.text, valid_actions=turn.valid_actions, state_hash=turn.state_hash, env_reward=turn.env_reward,
            reward_terms=turn.reward_terms, truncated=turn.truncated, action_valid=turn.action_valid,
            invalid_action=turn.invalid_action, success=turn.success, seed=self.session.seed,
            reward=turn.reward, done=turn.done)


def create_server_app(env_id: str, shaping: SpecLike = "none", *, gamma: float = 1.0, max_concurrent: int = 8,
                      idle_timeout: float = 600.0, **env_kwargs: Any) -> Any:
    """OpenEnv's FastAPI app serving ``env_id`` under ``shaping``, behind a :class:`SessionGuard`.

    ``idle_timeout`` is how many seconds a session may wait for its client's next message before
    the server closes it and frees its slot (0: never). The id, spec and kwargs are checked here,
    by building one env, so a mistake stops the command instead of every session."""
    if max_concurrent < 1:
        raise ValueError(f"max_concurrent must be at least 1, got {max_concurrent}")
    if not (math.isfinite(idle_timeout) and idle_timeout >= 0):
        raise ValueError(f"idle_timeout is in seconds, 0 or more (0: never), got {idle_timeout}")
    AlignEnvironment(env_id, shaping, gamma, **env_kwargs).close()
    factory = functools.partial(AlignEnvironment, env_id, shaping, gamma, **env_kwargs)
    app = create_app(factory, TextAction, AlignObservation, env_name=env_id.removeprefix("Align/"),
                     max_concurrent_envs=max_concurrent)

    from fastapi.responses import JSONResponse

    async def episode_error(request: Any, error: Exception) -> JSONResponse:
        # OpenEnv's stateless HTTP /step builds a fresh env per request: say why it cannot step.
        return JSONResponse(status_code=409, content={"detail": f"{error} (HTTP /step has no session: "
                                                                "use a WebSocket client such as GenericEnvClient)"})

    app.add_exception_handler(EpisodeError, episode_error)
    app.add_middleware(SessionGuard, max_concurrent=max_concurrent, idle_timeout=idle_timeout)
    return app


MAX_MESSAGE_DEPTH = 32  # a request is {"type": ..., "data": {"action": "<text>"}}: 2 levels deep


def message_problem(message: dict[str, Any]) -> str | None:
    """Why OpenEnv's ``/ws`` handler cannot take this received frame as a request, or None.

    That handler answers JSON it cannot parse and objects it cannot validate with an error and
    goes on, but anything else it meets ends the session with ``SESSION_ERROR``: a frame that is
    valid JSON but not an object (``[1, 2]``, ``null``), JSON nested past Python's recursion limit,
    a request nested past what pydantic serialises in its error reply, a binary frame."""
    text = message.get("text")
    if text is None:
        return "send each message as a text frame of JSON, not as a binary frame"
    try:
        request = json.loads(text)
    except json.JSONDecodeError:
        return None  # OpenEnv answers this one itself (INVALID_JSON)
    except RecursionError:
        return f"Invalid message: JSON nested deeper than {MAX_MESSAGE_DEPTH} levels"
    if not isinstance(request, dict):
        return ('Invalid message: a message is a JSON object such as {"type": "step", "data": {"action": "look"}}, '
                f"got a JSON {type(request).__name__}")
    stack = [(request, 1)]
    while stack:  # iterative, so a deep message costs no recursion here either
        value, depth = stack.pop()
        if depth > MAX_MESSAGE_DEPTH:
            return f"Invalid message: JSON nested deeper than {MAX_MESSAGE_DEPTH} levels"
        children = value.values() if isinstance(value, dict) else value
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return None


def error_frame(message: str, code: str, **details: Any) -> dict[str, Any]:
    """An ASGI frame carrying OpenEnv's error reply (what its clients read and raise)."""
    return {"type": "websocket.send", "text": json.dumps({"type": "error", "data": {"message": message, "code": code,
                                                                                   **details}})}


class SessionGuard:
    """ASGI middleware around OpenEnv's WebSocket sessions (``/ws``), for what its handler leaves open.

    - **Capacity.** A client past ``max_concurrent`` gets OpenEnv's ``CAPACITY_REACHED`` error and
      a close frame (1013, try again later) that both give the reason. OpenEnv's own refusal closes
      with a bare 1000, so a client that sends before it reads (OpenEnv's clients do) sees only
      ``ConnectionClosedOK``. The guard counts the sessions it lets through, which OpenEnv ends
      before the guard's count drops, so OpenEnv's own check never comes first.
    - **Unreadable messages.** A frame :func:`message_problem` names gets an error reply and the
      session goes on (OpenEnv would end it).
    - **Idle sessions.** A session whose client sends nothing for ``idle_timeout`` seconds (0:
      never) gets an error reply and a close frame naming the reason, and OpenEnv frees its slot.
      Silence counts from when the server last answered, so a slow step is never idleness.
    - **Vanished clients.** OpenEnv frees the session, then its closing handshake raises
      ``WebSocketDisconnect`` (it catches only ``RuntimeError`` there), which uvicorn would log as
      a crash with a full traceback for every such client; those end quietly.
    """

    def __init__(self, app: Any, max_concurrent: int, idle_timeout: float):
        self.app = app
        self.max_concurrent = max_concurrent
        self.idle_timeout = idle_timeout
        self.sessions = 0  # /ws connections let through and not yet ended

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        from starlette.websockets import WebSocketDisconnect

        if scope["type"] != "websocket":
            return await self.app(scope, receive, send)
        if scope["path"] != "/ws":
            try:
                return await self.app(scope, receive, send)
            except WebSocketDisconnect:
                return
        if self.sessions >= self.max_concurrent:
            return await self._refuse(receive, send)
        self.sessions += 1  # no await between the check and here: two clients cannot take one slot
        try:
            await self._session(scope, receive, send)
        except WebSocketDisconnect:
            pass
        finally:
            self.sessions -= 1

    async def _refuse(self, receive: Any, send: Any) -> None:
        reason = f"server at capacity: {self.max_concurrent} sessions (--max-concurrent); try again later"
        if (await receive())["type"] != "websocket.connect":
            return
        await send({"type": "websocket.accept"})
        await send(error_frame(reason, "CAPACITY_REACHED", active_sessions=self.sessions,
                               max_sessions=self.max_concurrent))
        await send({"type": "websocket.close", "code": 1013, "reason": reason})

    async def _session(self, scope: dict, receive: Any, send: Any) -> None:
        accepted = closed = False  # closed: the guard closed the socket (idle), the app's close comes too late

        async def guarded_send(message: dict) -> None:
            nonlocal accepted
            if closed:
                return
            accepted = accepted or message["type"] == "websocket.accept"
            await send(message)

        async def guarded_receive() -> dict:
            nonlocal closed
            if not accepted:  # the handshake
                return await receive()
            while True:
                try:
                    message = await asyncio.wait_for(receive(), self.idle_timeout or None)
                except TimeoutError:
                    reason = f"session closed: idle for {self.idle_timeout:g} s (--idle-timeout)"
                    closed = True
                    with contextlib.suppress(OSError):  # a client that vanished without a word cannot be told
                        await send(error_frame(reason, "IDLE_TIMEOUT"))
                        await send({"type": "websocket.close", "code": 1000, "reason": reason})
                    return {"type": "websocket.disconnect", "code": 1000}  # OpenEnv ends the session, frees its slot
                problem = message_problem(message) if message["type"] == "websocket.receive" else None
                if problem is None:
                    return message
                await send(error_frame(problem, "VALIDATION_ERROR"))

        await self.app(scope, guarded_receive, guarded_send)


def serve(env_id: str, shaping: SpecLike = "none", *, gamma: float = 1.0, max_concurrent: int = 8,
          idle_timeout: float = 600.0, host: str = "127.0.0.1", port: int = 8000, **env_kwargs: Any) -> None:
    """Serve until interrupted (what ``align-gym serve-env`` runs)."""
    import uvicorn

    app = create_server_app(env_id, shaping, gamma=gamma, max_concurrent=max_concurrent, idle_timeout=idle_timeout,
                            **env_kwargs)
    idle = f"closed after {idle_timeout:g} s idle" if idle_timeout else "never closed for idling"
    print(f"serving {env_id} (shaping {shaping}) on http://{host}:{port} "
          f"and ws://{host}:{port}/ws, up to {max_concurrent} sessions, {idle}", flush=True)
    uvicorn.run(app, host=host, port=port, log_level="warning")
