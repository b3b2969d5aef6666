"""Align text and tool envs as an OpenEnv environment server (``align-gym serve-env``).

TRL, SkyRL, ART, Unsloth and NeMo Gym read OpenEnv servers; this one is OpenEnv's own server
(``openenv.core.env_server.create_app``) around an :class:`~align_gym.agents.session.EnvSession`,
with no protocol of our own:

- each WebSocket session (what OpenEnv's clients open) gets its own env instance, up to
  ``max_concurrent`` at once; a client that disconnects frees its slot;
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

import functools
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
                      **env_kwargs: Any) -> Any:
    """OpenEnv's FastAPI app serving ``env_id`` under ``shaping``. The id, spec and kwargs are
    checked here, by building one env, so a mistake stops the command instead of every session."""
    if max_concurrent < 1:
        raise ValueError(f"max_concurrent must be at least 1, got {max_concurrent}")
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
    app.add_middleware(QuietDisconnects)
    return app


class QuietDisconnects:
    """ASGI middleware: a WebSocket client that vanished mid-episode is normal for a server of
    many sessions. OpenEnv frees the session, then its closing handshake raises
    ``WebSocketDisconnect`` (it catches only ``RuntimeError`` there), which uvicorn would log as
    a crash with a full traceback for every such client; end those quietly."""

    def __init__(self, app: Any):
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        from starlette.websockets import WebSocketDisconnect

        try:
            await self.app(scope, receive, send)
        except WebSocketDisconnect:
            if scope["type"] != "websocket":
                raise


def serve(env_id: str, shaping: SpecLike = "none", *, gamma: float = 1.0, max_concurrent: int = 8,
          host: str = "127.0.0.1", port: int = 8000, **env_kwargs: Any) -> None:
    """Serve until interrupted (what ``align-gym serve-env`` runs)."""
    import uvicorn

    app = create_server_app(env_id, shaping, gamma=gamma, max_concurrent=max_concurrent, **env_kwargs)
    print(f"serving {env_id} (shaping {shaping}) on http://{host}:{port} "
          f"and ws://{host}:{port}/ws, up to {max_concurrent} sessions", flush=True)
    uvicorn.run(app, host=host, port=port, log_level="warning")
