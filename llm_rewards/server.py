"""``align-gym serve-llm``: an OpenAI-compatible HTTP server over a local model, answering as
vLLM's server does for the paths this project uses.

Several env processes on one box then share one loaded model through the ``openai`` backend or
the official ``openai`` Python client, unchanged. Endpoints:

- ``GET /v1/models``; ``GET /metrics`` (batches run and the sequences they held);
- ``POST /v1/completions``: ``prompt`` (a non-empty string or a list of them), ``max_tokens``
  (default 16; ``null``: up to the context), ``temperature`` (default 1), ``n``, ``stop``,
  ``seed``, ``echo``, ``logprobs=k`` (``tokens``, ``token_logprobs``, ``top_logprobs`` with k
  entries, ``text_offset``, for generated tokens and, with ``echo``, for the prompt's),
  ``stream``; ``max_tokens=0, echo=true, logprobs=1`` scores a text;
- ``POST /v1/chat/completions``: ``messages`` (each a ``role`` and a ``content``: a string or a
  list of text parts), ``max_completion_tokens`` or ``max_tokens`` (default: up to the context),
  ``temperature``, ``n``, ``stop``, ``seed``, ``logprobs``, ``top_logprobs``, ``stream``.

Requests are checked against request models, as vLLM's are. A field of the wrong type or out of
range, an empty prompt (vLLM refuses one too), a prompt plus ``max_tokens`` longer than the context
(``--max-model-len``, default the model's own), or more sequences (prompts times ``n``) than one
batch holds (``--max-batch``) gets a 400 whose body names the field and the reason, as vLLM's does:
``{"error": {"message": ..., "type": "BadRequestError", "param": ..., "code": 400}}``; an unknown
model gets a 404 (``NotFoundError``), and nothing answers with a traceback.

``finish_reason`` is ``"length"`` when ``max_tokens`` cut the text and ``"stop"`` otherwise.
Streams are server-sent events, as the official client reads them, one chunk per generated token
carrying that token's text and, when asked for, its log-probabilities.

Concurrent requests are batched: a :class:`Batcher` collects the requests that arrive within
``batch_window`` seconds (up to ``max_batch`` sequences) and decodes them in shared forward passes,
each sequence with its own seed. A request whose client goes away (a timeout, a closed stream) is
cancelled: its sequences leave the batch at the next decoding step. One SIGTERM (or Ctrl-C) stops
the server: requests in flight get :data:`SHUTDOWN_GRACE` seconds, then are cancelled.

Batching and reproducibility: in a shared batch a sequence's logits are not bit for bit those it
has alone (left padding changes the attention's kernel and the order of its sums: in bf16 on a CPU
one logit of the embedded model moved by 0.39), so a greedy or seeded answer can change with what
it was batched with, as on vLLM. ``--batch-invariant`` decodes every request in forward passes of its own: its answer then
depends on the request alone, at the cost of batching (concurrent requests wait their turn).
Binds to 127.0.0.1 unless told otherwise.

    align-gym serve-llm --model hf:default --port 8000
"""

from __future__ import annotations

import asyncio
import json
import queue
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import Future
from http import HTTPStatus
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from jinja2 import TemplateError
from pydantic import BaseModel, ConfigDict, Field, field_validator
from starlette.exceptions import HTTPException as StarletteHTTPException

from .clients.decoding import Piece, Result, Row, sample_rows

DEFAULT_HOST, DEFAULT_PORT = "127.0.0.1", 8000
SHUTDOWN_GRACE = 2.0  # seconds that requests in flight get after a SIGTERM before they are cancelled
MAX_TOP_LOGPROBS = 20  # as vLLM's default --max-logprobs
_INT64 = 2**63


class BadRequest(ValueError):
    """A request the server refuses with 400, naming the field at fault."""

    def __init__(self, message: str, param: str | None = None):
        super().__init__(message)
        self.param = param


class ModelNotFound(LookupError):
    """A request for a model this server does not serve (404)."""


class ClientGone(Exception):
    """The client disconnected before its answer was ready: there is no one to answer."""


def _strings(value: Any, shape: str) -> Any:
    """``value`` if it is None, a string or a list of strings; else one clear error (pydantic's
    own would list each branch of the union)."""
    if value is None or isinstance(value, str) or (isinstance(value, list) and all(isinstance(v, str) for v in value)):
        return value
    raise ValueError(f"must be {shape}")


# Request models: what OpenAI's API accepts, with its defaults (vLLM's server checks the same way).
# Fields this server does not know are ignored, as vLLM ignores them.


class _Sampling(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str | None = None
    n: int | None = Field(None, ge=1, description="how many completions per prompt (default 1)")
    temperature: float | None = Field(None, ge=0, allow_inf_nan=False, description="default 1.0, as OpenAI's")
    stop: str | list[str] | None = None
    seed: int | None = Field(None, ge=-_INT64, lt=_INT64)
    stream: bool | None = False

    @field_validator("stop", mode="before")
    @classmethod
    def _stop_shape(cls, stop: Any) -> Any:
        return _strings(stop, "a string or a list of strings")

    @property
    def stops(self) -> list[str]:
        return [self.stop] if isinstance(self.stop, str) else list(self.stop or [])


class CompletionRequest(_Sampling):
    """``POST /v1/completions``."""

    prompt: str | list[str]
    max_tokens: int | None = Field(16, ge=0, description="default 16, as OpenAI's; null: up to the context")
    echo: bool | None = False
    logprobs: int | None = Field(None, ge=0, le=MAX_TOP_LOGPROBS)

    @field_validator("prompt", mode="before")
    @classmethod
    def _prompt_shape(cls, prompt: Any) -> Any:
        return _strings(prompt, "a string or a list of strings (token ids are not taken)")

    @field_validator("prompt")
    @classmethod
    def _not_empty(cls, prompt: str | list[str]) -> str | list[str]:
        # vLLM refuses an empty prompt too: there is nothing to continue from.
        if isinstance(prompt, list) and not prompt:
            raise ValueError("the list of prompts is empty")
        if any(p == "" for p in ([prompt] if isinstance(prompt, str) else prompt)):
            raise ValueError("a prompt is empty: give at least one character")
        return prompt


class TextPart(BaseModel):
    type: Literal["text"]
    text: str


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: str
    content: str | list[TextPart]

    @field_validator("content", mode="before")
    @classmethod
    def _content_shape(cls, content: Any) -> Any:
        if isinstance(content, str) or (isinstance(content, list) and all(
                isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str) for p in content)):
            return content
        raise ValueError('must be a string or a list of text parts ({"type": "text", "text": "..."}): '
                         "this model reads text only")

    def as_dict(self) -> dict[str, str]:
        text = self.content if isinstance(self.content, str) else "".join(part.text for part in self.content)
        return {"role": self.role, "content": text}


class ChatRequest(_Sampling):
    """``POST /v1/chat/completions``."""

    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1, description="wins over max_tokens; neither: up to the context")
    logprobs: bool | None = False
    top_logprobs: int | None = Field(None, ge=0, le=MAX_TOP_LOGPROBS)


class Batcher:
    """Decodes the rows of concurrent requests together: a worker thread keeps collecting while
    requests arrive less than ``window`` seconds apart (for at most ``5 * window`` seconds and
    ``max_rows`` rows; a request that does not fit opens the next batch), then runs one
    ``decode`` over all of it. With ``invariant``, each request
    is decoded alone, so what arrives beside it cannot change its answer."""

    def __init__(self, client: Any, window: float = 0.05, max_rows: int = 32, invariant: bool = False):
        self.client, self.window, self.max_rows, self.invariant = client, window, max_rows, invariant
        self._queue: queue.Queue[tuple[list[Row], Future]] = queue.Queue()
        self._held: tuple[list[Row], Future] | None = None  # a request that did not fit the last batch
        self.batches = self.rows = 0  # how many batches ran, with how many rows in all
        threading.Thread(target=self._run, name="align-gym-batcher", daemon=True).start()

    def submit(self, rows: list[Row]) -> Future:
        future: Future = Future()
        self._queue.put((rows, future))
        return future

    def _collect(self) -> list[tuple[list[Row], Future]]:
        batch = [self._held or self._queue.get()]
        self._held = None
        size, first = len(batch[0][0]), time.monotonic()
        deadline = first + self.window
        while not self.invariant and size < self.max_rows:
            left = min(deadline, first + 5 * self.window) - time.monotonic()
            if left <= 0:
                break
            try:
                request = self._queue.get(timeout=left)
            except queue.Empty:
                break
            if size + len(request[0]) > self.max_rows:  # it opens the next batch
                self._held = request
                break
            batch.append(request)
            size += len(request[0])
            deadline = time.monotonic() + self.window  # clients still arriving: wait for them
        # A request cancelled while it waited is dropped; the others can no longer be cancelled
        # through their future (their rows can, through ``Row.cancelled``).
        return [(rows, future) for rows, future in batch if future.set_running_or_notify_cancel()]

    def _run(self) -> None:
        while True:
            batch = self._collect()
            if not batch:
                continue
            rows = [row for request, _ in batch for row in request]  # decode skips the cancelled ones
            try:
                results = self.client.decode(rows)
            except Exception as error:  # every request of the batch hears of it
                for _, future in batch:
                    future.set_exception(error)
                continue
            self.batches += 1
            self.rows += len(rows)
            start = 0
            for request, future in batch:
                future.set_result(results[start:start + len(request)])
                start += len(request)


def _error(status: int, kind: str, message: str, param: str | None = None) -> JSONResponse:
    """OpenAI's error body, as vLLM's server sends it."""
    return JSONResponse(status_code=status,
                        content={"error": {"message": message, "type": kind, "param": param, "code": status}})


def _validation_message(error: RequestValidationError) -> tuple[str, str | None]:
    """Each failed field with pydantic's reason, e.g. ``max_tokens: Input should be a valid integer``."""
    parts, params = [], []
    for problem in error.errors():
        where = ".".join(str(p) for p in problem.get("loc", ()) if p != "body") or "body"
        reason = str(problem.get("msg", "invalid")).removeprefix("Value error, ")
        if problem.get("type") == "json_invalid":
            where, reason = "body", f"JSON decode error ({problem.get('ctx', {}).get('error', 'invalid JSON')})"
        parts.append(f"{where}: {reason}")
        params.append(where)
    return "; ".join(parts) or "invalid request", (params[0] if params else None)


async def _until_disconnected(request: Request) -> None:
    """Returns when the client has closed its connection (its body is already read, so the next
    message the server gets on it is the disconnect)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


def _sse(payload: Any) -> str:
    return f"data: {json.dumps(payload)}\n\n"


def create_app(client: Any, served_name: str | None = None, batch_window: float = 0.05, max_batch: int = 32,
               max_model_len: int | None = None, batch_invariant: bool = False) -> FastAPI:
    """A FastAPI app serving ``client`` (a :class:`TransformersClient`: ``encode``, ``decode``,
    ``token_logprobs``) under ``served_name``; a prompt plus its completion may hold
    ``max_model_len`` tokens (default: the model's context)."""
    name = served_name or client.model
    context = max_model_len or model_context(client)
    app = FastAPI(title="align-gym LLM server")
    batcher = Batcher(client, batch_window, max_batch, invariant=batch_invariant)
    app.state.batcher = batcher

    @app.exception_handler(RequestValidationError)
    def invalid_request(_, error: RequestValidationError) -> JSONResponse:
        return _error(400, "BadRequestError", *_validation_message(error))  # vLLM answers 400, not FastAPI's 422

    @app.exception_handler(BadRequest)
    def bad_request(_, error: BadRequest) -> JSONResponse:
        return _error(400, "BadRequestError", str(error), error.param)

    @app.exception_handler(ModelNotFound)
    def model_not_found(_, error: ModelNotFound) -> JSONResponse:
        return _error(404, "NotFoundError", str(error), "model")

    @app.exception_handler(StarletteHTTPException)
    def http_error(_, error: StarletteHTTPException) -> JSONResponse:  # unknown paths, wrong methods
        kind = HTTPStatus(error.status_code).phrase.replace(" ", "") + "Error"
        return _error(error.status_code, kind, str(error.detail))

    @app.exception_handler(ClientGone)
    def client_gone(_, error: ClientGone) -> Response:
        return Response(status_code=499)  # nobody reads it: the connection is closed

    @app.exception_handler(Exception)
    def internal_error(_, error: Exception) -> JSONResponse:  # the traceback goes to the server's log
        return _error(500, "InternalServerError", f"{type(error).__name__}: {error}")

    def check_model(requested: str | None) -> None:
        if requested not in (None, name, client.model):
            raise ModelNotFound(f"the model {requested!r} does not exist here; this server serves {name!r}")

    def budget(prompt_ids: list[int], max_tokens: int | None, what: str) -> int:
        """``max_tokens``, or what is left of the context when it is None; 400 past the context."""
        if len(prompt_ids) >= context and max_tokens != 0:
            raise BadRequest(f"This model's maximum context length is {context} tokens, and the {what} alone has "
                             f"{len(prompt_ids)}: shorten it.", "prompt" if what == "prompt" else "messages")
        if max_tokens is None:
            return context - len(prompt_ids)
        if len(prompt_ids) + max_tokens > context:
            raise BadRequest(f"This model's maximum context length is {context} tokens. However, you requested "
                             f"{len(prompt_ids) + max_tokens} tokens ({len(prompt_ids)} in the {what}, {max_tokens} "
                             f"in the completion). Reduce the length of the {what} or max_tokens.", "max_tokens")
        return max_tokens

    def check_rows(prompts: int, n: int) -> None:
        if prompts * n > max_batch:
            raise BadRequest(f"this request asks for {prompts * n} sequences ({prompts} prompt(s) x n={n}); this "
                             f"server decodes at most {max_batch} at once (--max-batch)", "n")

    def rows_for(prompt_ids: list[int], body: _Sampling, max_tokens: int, top: int) -> list[Row]:
        temperature = 1.0 if body.temperature is None else body.temperature  # OpenAI's default
        return sample_rows(prompt_ids, body.n or 1, max_tokens, temperature, body.stops, body.seed, top)

    def usage(prompt_tokens: int, results: Sequence[Result]) -> dict[str, int]:
        completion_tokens = sum(len(r.token_ids) for r in results)
        return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens}

    async def run(rows: list[Row], request: Request) -> list[Result]:
        """The rows decoded in the shared batch; cancelled if the client leaves (or the server
        stops) before they are done."""
        done = asyncio.wrap_future(batcher.submit(rows))
        gone = asyncio.ensure_future(_until_disconnected(request))
        try:
            await asyncio.wait({done, gone}, return_when=asyncio.FIRST_COMPLETED)
            if not done.done():
                raise ClientGone
            return done.result()
        finally:
            gone.cancel()
            if not done.done():
                for row in rows:
                    row.cancelled = True

    def stream(rows: list[Row], opening: Callable[[int], dict | None], piece: Callable[[int, Piece], dict],
               final: Callable[[int, Result], dict]) -> StreamingResponse:
        """Server-sent events: each row's opening chunk, one chunk per token as the batcher makes
        it, each row's end, then ``[DONE]``. A client that leaves cancels the rows."""
        loop = asyncio.get_running_loop()
        events: asyncio.Queue = asyncio.Queue()
        for k, row in enumerate(rows):
            row.on_token = lambda p, k=k: loop.call_soon_threadsafe(events.put_nowait, (k, p))
        future = batcher.submit(rows)
        future.add_done_callback(lambda _: loop.call_soon_threadsafe(events.put_nowait, None))

        async def events_out() -> AsyncIterator[str]:
            try:
                for k in range(len(rows)):
                    if (chunk := opening(k)) is not None:
                        yield _sse(chunk)
                while (event := await events.get()) is not None:
                    yield _sse(piece(*event))
                for k, result in enumerate(future.result()):
                    yield _sse(final(k, result))
                yield "data: [DONE]\n\n"
            finally:  # the client left (or the server is stopping): stop decoding for it
                if not future.done():
                    for row in rows:
                        row.cancelled = True

        return StreamingResponse(events_out(), media_type="text/event-stream")

    @app.get("/metrics")
    def metrics() -> PlainTextResponse:
        """Prometheus-style counters, as vLLM's server has: batches run and the rows they held."""
        return PlainTextResponse(f"align_gym_batches_total {batcher.batches}\n"
                                 f"align_gym_batched_rows_total {batcher.rows}\n")

    @app.get("/v1/models")
    def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": name, "object": "model", "created": 0, "owned_by": "align-gym",
                                            "max_model_len": context}]}

    @app.post("/v1/chat/completions")
    async def chat(body: ChatRequest, request: Request):
        check_model(body.model)
        if body.top_logprobs and not body.logprobs:
            raise BadRequest("top_logprobs needs logprobs=true", "top_logprobs")
        want_logprobs, top = bool(body.logprobs), (body.top_logprobs or 0) if body.logprobs else 0
        check_rows(1, body.n or 1)
        try:
            [prompt_ids] = client.encode([[m.as_dict() for m in body.messages]])
        except (TemplateError, ValueError) as error:  # the chat template's own checks (roles that must alternate)
            raise BadRequest(f"the model's chat template refused these messages: {error}", "messages") from None
        wanted = body.max_completion_tokens if body.max_completion_tokens is not None else body.max_tokens
        rows = rows_for(prompt_ids, body, budget(prompt_ids, wanted, "messages"), top)
        answer_id, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())

        def entry(token: str, value: float, alternatives: dict[str, float] | None) -> dict[str, Any]:
            return {"token": token, "logprob": value, "bytes": list(token.encode()),
                    "top_logprobs": [{"token": t, "logprob": v, "bytes": list(t.encode())}
                                     for t, v in (alternatives or {}).items()]}

        def content_logprobs(result: Result) -> dict[str, Any] | None:
            if not want_logprobs:
                return None
            return {"content": [entry(token, value, result.top_logprobs[k] if top else None)
                                for k, (token, value) in enumerate(zip(result.tokens, result.logprobs))]}

        if body.stream:
            head = {"id": answer_id, "object": "chat.completion.chunk", "created": created, "model": name}

            def choice(index: int, delta: dict, logprobs: dict | None, reason: str | None) -> dict[str, Any]:
                return {**head, "choices": [{"index": index, "delta": delta, "logprobs": logprobs,
                                             "finish_reason": reason}]}

            return stream(
                rows, lambda k: choice(k, {"role": "assistant", "content": ""}, None, None),
                lambda k, p: choice(k, {"content": p.text},
                                    {"content": [entry(p.token, p.logprob, p.top_logprobs)]} if want_logprobs else None,
                                    None),
                lambda k, result: choice(k, {}, None, result.finish_reason))
        results = await run(rows, request)
        return {"id": answer_id, "object": "chat.completion", "created": created, "model": name,
                "usage": usage(len(prompt_ids) * len(rows), results),
                "choices": [{"index": j, "message": {"role": "assistant", "content": r.text},
                             "logprobs": content_logprobs(r), "finish_reason": r.finish_reason}
                            for j, r in enumerate(results)]}

    @app.post("/v1/completions")
    async def completions(body: CompletionRequest, request: Request):
        check_model(body.model)
        prompts = [body.prompt] if isinstance(body.prompt, str) else body.prompt
        echo, k, n = bool(body.echo), body.logprobs, body.n or 1
        top = k or 0
        answer_id, created = f"cmpl-{uuid.uuid4().hex}", int(time.time())
        head = {"id": answer_id, "object": "text_completion", "created": created, "model": name}
        loop = asyncio.get_running_loop()
        check_rows(len(prompts), n)
        encoded = client.encode(prompts)
        budgets = [budget(ids, body.max_tokens, "prompt") for ids in encoded]

        async def prompt_logprobs(prompt: str) -> dict[str, list]:
            """The prompt's own tokens and log-probabilities (``echo``), one forward pass."""
            tokens, values, offsets, alternatives = await loop.run_in_executor(
                None, lambda: client.token_logprobs(prompt, top=top))
            return {"tokens": tokens, "token_logprobs": values, "text_offset": offsets, "top_logprobs": alternatives}

        if body.max_tokens == 0:
            if not echo or k is None:
                raise BadRequest("max_tokens=0 is only for scoring: pass echo=true and logprobs", "max_tokens")
            choices = []
            for i, prompt in enumerate(prompts):
                scored = await prompt_logprobs(prompt)
                choices.append({"index": i, "text": prompt, "finish_reason": "length",
                                "logprobs": {**scored, "top_logprobs": scored["top_logprobs"] if top else None}})
            total = sum(len(c["logprobs"]["tokens"]) for c in choices)
            return {**head, "choices": choices,
                    "usage": {"prompt_tokens": total, "completion_tokens": 0, "total_tokens": total}}

        rows = [row for ids, most in zip(encoded, budgets) for row in rows_for(ids, body, most, top)]
        echoed = [await prompt_logprobs(p) for p in prompts] if echo and k is not None else [None] * len(prompts)

        def token_logprobs(tokens: list[str], values: list[float], alternatives: list[dict[str, float]],
                           start: int) -> dict[str, Any]:
            offsets = []
            for token in tokens:
                offsets.append(start)
                start += len(token)
            return {"tokens": tokens, "token_logprobs": values, "text_offset": offsets,
                    "top_logprobs": alternatives if top else None}

        if body.stream:
            offsets = [len(prompts[j // n]) if echo else 0 for j in range(len(rows))]  # where each row's next token starts

            def opening(j: int) -> dict[str, Any] | None:
                if not echo:
                    return None
                scored = echoed[j // n]
                logprobs = {**scored, "top_logprobs": scored["top_logprobs"] if top else None} if scored else None
                return {**head, "choices": [{"index": j, "text": prompts[j // n], "logprobs": logprobs,
                                             "finish_reason": None}]}

            def piece(j: int, p: Piece) -> dict[str, Any]:
                logprobs = None
                if k is not None:
                    logprobs = token_logprobs([p.token], [p.logprob], [p.top_logprobs or {}], offsets[j])
                offsets[j] += len(p.token)
                return {**head, "choices": [{"index": j, "text": p.text, "logprobs": logprobs, "finish_reason": None}]}

            def final(j: int, result: Result) -> dict[str, Any]:
                return {**head, "choices": [{"index": j, "text": "", "logprobs": None,
                                             "finish_reason": result.finish_reason}]}

            return stream(rows, opening, piece, final)
        results = await run(rows, request)
        choices = []
        for j, result in enumerate(results):
            prompt, logprobs = prompts[j // n], None
            if k is not None:
                logprobs = token_logprobs(result.tokens, result.logprobs, result.top_logprobs,
                                          len(prompt) if echo else 0)
                if echo:
                    scored = echoed[j // n]
                    logprobs = {key: scored[key] + logprobs[key] if logprobs[key] is not None else None
                                for key in logprobs}
            choices.append({"index": j, "text": (prompt + result.text) if echo else result.text,
                            "logprobs": logprobs, "finish_reason": result.finish_reason})
        return {**head, "choices": choices, "usage": usage(sum(len(ids) for ids in encoded) * n, results)}

    return app


def model_context(client: Any) -> int:
    """How many tokens the model attends to: its config's ``max_position_embeddings``."""
    config = getattr(getattr(client, "lm", None), "config", None)
    length = getattr(config, "max_position_embeddings", None)
    if not length:
        raise ValueError("cannot tell this model's context length: pass --max-model-len")
    return int(length)


def serve(model_spec: str = "hf:default", host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
          served_model_name: str | None = None, batch_window: float = 0.05, max_batch: int = 32,
          max_model_len: int | None = None, batch_invariant: bool = False) -> None:
    """Load the model once and serve it until interrupted (one SIGTERM or Ctrl-C stops it)."""
    import uvicorn

    from .clients import get_client

    if max_batch < 1:
        raise ValueError(f"--max-batch must be >= 1, got {max_batch}")
    client = get_client(model_spec, cache=None)
    if not hasattr(client, "decode"):
        raise ValueError(f"serve-llm serves local models (hf:...), not {model_spec!r}")
    if max_model_len is not None and not 1 <= max_model_len <= model_context(client):
        raise ValueError(f"--max-model-len must be between 1 and the model's context ({model_context(client)}), "
                         f"got {max_model_len}")
    app = create_app(client, served_model_name, batch_window, max_batch, max_model_len, batch_invariant)
    print(f"serving {served_model_name or client.model} on http://{host}:{port}/v1", flush=True)
    # Without a grace limit uvicorn waits for every request in flight, however long it decodes.
    uvicorn.run(app, host=host, port=port, log_level="warning", timeout_graceful_shutdown=SHUTDOWN_GRACE)
