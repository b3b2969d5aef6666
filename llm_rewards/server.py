"""``align-gym serve-llm``: an OpenAI-compatible HTTP server over a local model, speaking what
vLLM's server speaks for the paths this project uses.

Several env processes on one box then share one loaded model through the ``openai`` backend or
the official ``openai`` Python client, unchanged. Endpoints:

- ``GET /v1/models``; ``GET /metrics`` (batches run and the sequences they held);
- ``POST /v1/completions``: ``prompt`` (a string or a list), ``max_tokens``, ``temperature``, ``n``,
  ``stop``, ``seed``, ``echo``, ``logprobs=k`` (``tokens``, ``token_logprobs``, ``top_logprobs``
  with k entries, ``text_offset``, for generated tokens and, with ``echo``, for the prompt's),
  ``stream``; ``max_tokens=0, echo=true, logprobs=1`` scores a text;
- ``POST /v1/chat/completions``: ``messages``, ``max_tokens`` (or ``max_completion_tokens``),
  ``temperature``, ``n``, ``stop``, ``seed``, ``logprobs``, ``top_logprobs``, ``stream``.

``finish_reason`` is ``"length"`` when ``max_tokens`` cut the text and ``"stop"`` otherwise.
Streams are server-sent events, as the official client reads them. Concurrent requests are
batched: a :class:`Batcher` collects the requests that arrive within ``batch_window`` seconds (up
to ``max_batch`` sequences) and decodes them in shared forward passes; each sequence keeps its own
seed, so a seeded answer does not depend on what it was batched with. Binds to 127.0.0.1 unless
told otherwise.

    align-gym serve-llm --model hf:default --port 8000
"""

from __future__ import annotations

import asyncio
import json
import queue
import threading
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import Future
from typing import Any

from .clients.decoding import Result, Row, sample_rows

DEFAULT_HOST, DEFAULT_PORT = "127.0.0.1", 8000


class Batcher:
    """Decodes the rows of concurrent requests together: a worker thread keeps collecting while
    requests arrive less than ``window`` seconds apart (for at most ``5 * window`` seconds and
    ``max_rows`` rows), then runs one ``decode`` over all of it."""

    def __init__(self, client: Any, window: float = 0.05, max_rows: int = 32):
        self.client, self.window, self.max_rows = client, window, max_rows
        self._queue: queue.Queue[tuple[list[Row], Future]] = queue.Queue()
        self.batches = self.rows = 0  # how many batches ran, with how many rows in all
        threading.Thread(target=self._run, name="align-gym-batcher", daemon=True).start()

    def submit(self, rows: list[Row]) -> Future:
        future: Future = Future()
        self._queue.put((rows, future))
        return future

    def _run(self) -> None:
        while True:
            batch = [self._queue.get()]
            size, first = len(batch[0][0]), time.monotonic()
            deadline = first + self.window
            while size < self.max_rows:
                left = min(deadline, first + 5 * self.window) - time.monotonic()
                if left <= 0:
                    break
                try:
                    batch.append(self._queue.get(timeout=left))
                except queue.Empty:
                    break
                size += len(batch[-1][0])
                deadline = time.monotonic() + self.window  # clients still arriving: wait for them
            rows = [row for request, _ in batch for row in request]
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


def _stop_list(body: dict[str, Any]) -> list[str]:
    stop = body.get("stop")
    if stop is None:
        return []
    stops = [stop] if isinstance(stop, str) else stop
    if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
        raise ValueError("'stop' must be a string or a list of strings")
    return stops


def _rows(prompt_ids: list[int], body: dict[str, Any], top: int, max_tokens: int) -> list[Row]:
    n, temperature, seed = int(body.get("n") or 1), float(body.get("temperature", 1.0)), body.get("seed")
    if n < 1 or temperature < 0 or max_tokens < 0:
        raise ValueError("n must be >= 1, temperature >= 0 and max_tokens >= 0")
    if not 0 <= top <= 20:
        raise ValueError("at most 20 top log-probabilities per token")
    return sample_rows(prompt_ids, n, max_tokens, temperature, _stop_list(body), seed, top)


def _sse(payload: Any) -> str:
    return f"data: {json.dumps(payload)}\n\n"


def create_app(client: Any, served_name: str | None = None, batch_window: float = 0.05, max_batch: int = 32):
    """A FastAPI app serving ``client`` (a :class:`TransformersClient`: ``encode``, ``decode``,
    ``token_logprobs``) under ``served_name``."""
    from fastapi import FastAPI, HTTPException
    from fastapi.responses import JSONResponse, StreamingResponse

    name = served_name or client.model
    app = FastAPI(title="align-gym LLM server")
    batcher = Batcher(client, batch_window, max_batch)
    app.state.batcher = batcher

    def check_model(requested: str | None) -> None:
        if requested not in (None, name, client.model):
            raise HTTPException(404, f"model {requested!r} is not served here; this server serves {name!r}")

    def usage(prompt_tokens: int, results: Sequence[Result]) -> dict[str, int]:
        completion_tokens = sum(len(r.token_ids) for r in results)
        return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens}

    async def run(rows: list[Row]) -> list[Result]:
        return await asyncio.wrap_future(batcher.submit(rows))

    def stream(rows: list[Row], first_index: int, chunk, final) -> AsyncIterator[str]:
        """Server-sent events: text deltas as the batcher produces them, then each row's end."""
        loop = asyncio.get_running_loop()
        events: asyncio.Queue = asyncio.Queue()
        for k, row in enumerate(rows):
            row.on_text = lambda text, k=k: loop.call_soon_threadsafe(events.put_nowait, (k, text))
        future = batcher.submit(rows)
        future.add_done_callback(lambda _: loop.call_soon_threadsafe(events.put_nowait, None))

        async def events_out() -> AsyncIterator[str]:
            for k in range(len(rows)):
                opening = chunk(first_index + k, None)
                if opening is not None:
                    yield _sse(opening)
            while (event := await events.get()) is not None:
                yield _sse(chunk(first_index + event[0], event[1]))
            for k, result in enumerate(future.result()):
                yield _sse(final(first_index + k, result))
            yield "data: [DONE]\n\n"

        return events_out()

    @app.exception_handler(ValueError)
    def bad_request(_, error: ValueError):
        return JSONResponse(status_code=400, content={"error": {"message": str(error), "type": "invalid_request_error"}})

    @app.get("/metrics")
    def metrics():
        """Prometheus-style counters, as vLLM's server has: batches run and the rows they held."""
        from fastapi.responses import PlainTextResponse

        return PlainTextResponse(f"align_gym_batches_total {batcher.batches}\n"
                                 f"align_gym_batched_rows_total {batcher.rows}\n")

    @app.get("/v1/models")
    def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": name, "object": "model", "created": 0, "owned_by": "align-gym"}]}

    @app.post("/v1/chat/completions")
    async def chat(body: dict[str, Any]):
        check_model(body.get("model"))
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise ValueError("'messages' must be a non-empty list of {role, content}")
        want_logprobs = bool(body.get("logprobs"))
        top = int(body.get("top_logprobs") or 0) if want_logprobs else 0
        max_tokens = int(body.get("max_completion_tokens") or body.get("max_tokens") or 256)
        [prompt_ids] = client.encode([messages])
        rows = _rows(prompt_ids, body, top, max_tokens)
        answer_id, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())

        def content_logprobs(result: Result) -> dict[str, Any] | None:
            if not want_logprobs:
                return None
            return {"content": [
                {"token": token, "logprob": value, "bytes": list(token.encode()),
                 "top_logprobs": [{"token": t, "logprob": v, "bytes": list(t.encode())}
                                  for t, v in (result.top_logprobs[k].items() if top else [])]}
                for k, (token, value) in enumerate(zip(result.tokens, result.logprobs))]}

        if body.get("stream"):
            head = {"id": answer_id, "object": "chat.completion.chunk", "created": created, "model": name}

            def chunk(index: int, text: str | None) -> dict[str, Any]:
                delta = {"role": "assistant", "content": ""} if text is None else {"content": text}
                return {**head, "choices": [{"index": index, "delta": delta, "logprobs": None, "finish_reason": None}]}

            def final(index: int, result: Result) -> dict[str, Any]:
                return {**head, "choices": [{"index": index, "delta": {}, "logprobs": content_logprobs(result),
                                             "finish_reason": result.finish_reason}]}

            return StreamingResponse(stream(rows, 0, chunk, final), media_type="text/event-stream")
        results = await run(rows)
        return {"id": answer_id, "object": "chat.completion", "created": created, "model": name,
                "usage": usage(len(prompt_ids) * len(rows), results),
                "choices": [{"index": j, "message": {"role": "assistant", "content": r.text},
                             "logprobs": content_logprobs(r), "finish_reason": r.finish_reason}
                            for j, r in enumerate(results)]}

    @app.post("/v1/completions")
    async def completions(body: dict[str, Any]):
        check_model(body.get("model"))
        prompts = body.get("prompt")
        prompts = [prompts] if isinstance(prompts, str) else prompts
        if not isinstance(prompts, list) or not prompts or not all(isinstance(p, str) for p in prompts):
            raise ValueError("'prompt' must be a string or a list of strings")
        echo, k = bool(body.get("echo")), body.get("logprobs")
        top = int(k) if k is not None else 0
        max_tokens = int(body["max_tokens"]) if body.get("max_tokens") is not None else 16
        answer_id, created = f"cmpl-{uuid.uuid4().hex}", int(time.time())
        loop = asyncio.get_running_loop()

        async def prompt_logprobs(prompt: str) -> tuple[list, list, list, list]:
            return await loop.run_in_executor(None, lambda: client.token_logprobs(prompt, top=top))

        if max_tokens == 0:
            if not echo or k is None:
                raise ValueError("max_tokens=0 is only for scoring: pass echo=true and logprobs")
            choices = []
            for i, prompt in enumerate(prompts):
                tokens, values, offsets, alternatives = await prompt_logprobs(prompt)
                choices.append({"index": i, "text": prompt, "finish_reason": "length",
                                "logprobs": {"tokens": tokens, "token_logprobs": values, "text_offset": offsets,
                                             "top_logprobs": alternatives if top else None}})
            total = sum(len(c["logprobs"]["tokens"]) for c in choices)
            return {"id": answer_id, "object": "text_completion", "created": created, "model": name,
                    "choices": choices, "usage": {"prompt_tokens": total, "completion_tokens": 0, "total_tokens": total}}

        encoded = client.encode(prompts)
        per_prompt = [_rows(ids, body, top, max_tokens) for ids in encoded]
        n = len(per_prompt[0])

        async def logprobs_of(prompt: str, result: Result) -> dict[str, Any] | None:
            if k is None:
                return None
            tokens, values, offsets, alternatives = ([], [], [], [])
            if echo:
                tokens, values, offsets, alternatives = await prompt_logprobs(prompt)
            start = len(prompt) if echo else 0
            for token in result.tokens:
                offsets = [*offsets, start]
                start += len(token)
            return {"tokens": tokens + result.tokens, "token_logprobs": values + result.logprobs,
                    "top_logprobs": (alternatives + result.top_logprobs) if top else None, "text_offset": offsets}

        if body.get("stream"):
            if len(prompts) != 1:
                raise ValueError("stream one prompt per request")
            head = {"id": answer_id, "object": "text_completion", "created": created, "model": name}

            def chunk(index: int, text: str | None) -> dict[str, Any] | None:
                if text is None:
                    return {**head, "choices": [{"index": index, "text": prompts[0], "logprobs": None,
                                                 "finish_reason": None}]} if echo else None
                return {**head, "choices": [{"index": index, "text": text, "logprobs": None, "finish_reason": None}]}

            def final(index: int, result: Result) -> dict[str, Any]:
                return {**head, "choices": [{"index": index, "text": "", "logprobs": None,
                                             "finish_reason": result.finish_reason}]}

            return StreamingResponse(stream(per_prompt[0], 0, chunk, final), media_type="text/event-stream")
        results = await run([row for rows in per_prompt for row in rows])
        choices = []
        for i, prompt in enumerate(prompts):
            for j in range(n):
                result = results[i * n + j]
                choices.append({"index": i * n + j, "text": (prompt + result.text) if echo else result.text,
                                "logprobs": await logprobs_of(prompt, result), "finish_reason": result.finish_reason})
        return {"id": answer_id, "object": "text_completion", "created": created, "model": name, "choices": choices,
                "usage": usage(sum(len(ids) for ids in encoded) * n, results)}

    return app


def serve(model_spec: str = "hf:default", host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
          served_model_name: str | None = None, batch_window: float = 0.05, max_batch: int = 32) -> None:
    """Load the model once and serve it until interrupted."""
    import uvicorn

    from .clients import get_client

    client = get_client(model_spec, cache=None)
    if not hasattr(client, "decode"):
        raise ValueError(f"serve-llm serves local models (hf:...), not {model_spec!r}")
    app = create_app(client, served_model_name, batch_window, max_batch)
    print(f"serving {served_model_name or client.model} on http://{host}:{port}/v1", flush=True)
    uvicorn.run(app, host=host, port=port, log_level="warning")
