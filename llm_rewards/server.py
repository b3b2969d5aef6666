"""``align-gym serve-llm``: an OpenAI-compatible HTTP server over a local client.

Several env processes on one CPU box can then share one loaded model through the ``openai``
backend (or the official ``openai`` Python client, unchanged). Endpoints: ``GET /v1/models``,
``POST /v1/chat/completions``, ``POST /v1/completions`` (with ``echo`` and ``logprobs`` for
scoring: ``max_tokens=0, echo=true, logprobs=1`` returns every prompt token's log-probability).
Binds to 127.0.0.1 unless told otherwise.

    align-gym serve-llm --model hf:default --port 8000
"""

from __future__ import annotations

import time
import uuid
from typing import Any

DEFAULT_HOST, DEFAULT_PORT = "127.0.0.1", 8000


def create_app(client: Any, served_name: str | None = None):
    """A FastAPI app serving ``client`` (a :class:`TransformersClient` or any client with
    ``generate`` and ``token_logprobs``) under ``served_name``."""
    from fastapi import FastAPI, HTTPException
    from fastapi.responses import JSONResponse

    name = served_name or client.model
    app = FastAPI(title="align-gym LLM server")

    def check_model(requested: str | None) -> None:
        if requested not in (None, name, client.model):
            raise HTTPException(404, f"model {requested!r} is not served here; this server serves {name!r}")

    def sampling(body: dict[str, Any]) -> dict[str, Any]:
        stop = body.get("stop")
        return {"max_tokens": int(body.get("max_tokens") or 16), "temperature": float(body.get("temperature", 1.0)),
                "n": int(body.get("n", 1)), "stop": [stop] if isinstance(stop, str) else stop, "seed": body.get("seed")}

    def usage(before: tuple[int, int]) -> dict[str, int]:
        prompt_tokens = client.usage.prompt_tokens - before[0]
        completion_tokens = client.usage.completion_tokens - before[1]
        return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens}

    @app.exception_handler(ValueError)
    def bad_request(_, error: ValueError):
        return JSONResponse(status_code=400, content={"error": {"message": str(error), "type": "invalid_request_error"}})

    @app.get("/v1/models")
    def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": name, "object": "model", "created": 0, "owned_by": "align-gym"}]}

    @app.post("/v1/chat/completions")
    def chat(body: dict[str, Any]) -> dict[str, Any]:
        check_model(body.get("model"))
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise ValueError("'messages' must be a non-empty list of {role, content}")
        before = (client.usage.prompt_tokens, client.usage.completion_tokens)
        texts = client.generate([messages], **sampling(body))[0]
        return {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion", "created": int(time.time()),
                "model": name, "usage": usage(before),
                "choices": [{"index": i, "message": {"role": "assistant", "content": t}, "finish_reason": "stop"}
                            for i, t in enumerate(texts)]}

    @app.post("/v1/completions")
    def completions(body: dict[str, Any]) -> dict[str, Any]:
        check_model(body.get("model"))
        prompts = body.get("prompt")
        prompts = [prompts] if isinstance(prompts, str) else prompts
        if not isinstance(prompts, list) or not all(isinstance(p, str) for p in prompts):
            raise ValueError("'prompt' must be a string or a list of strings")
        params = sampling(body)
        echo, logprobs = bool(body.get("echo")), body.get("logprobs")
        before = (client.usage.prompt_tokens, client.usage.completion_tokens)
        choices = []
        if params["max_tokens"] == 0 or body.get("max_tokens") == 0:
            if logprobs is None or not echo:
                raise ValueError("max_tokens=0 is only for scoring: pass echo=true and logprobs")
            for i, prompt in enumerate(prompts):
                tokens, values, offsets = client.token_logprobs(prompt)
                choices.append({"index": i, "text": prompt, "finish_reason": "length",
                                "logprobs": {"tokens": tokens, "token_logprobs": values, "text_offset": offsets,
                                             "top_logprobs": None}})
        else:
            if logprobs is not None:
                raise ValueError("this server returns log-probabilities only for scoring (max_tokens=0, echo=true)")
            outputs = client.generate(prompts, **params)
            for i, (prompt, texts) in enumerate(zip(prompts, outputs)):
                for j, text in enumerate(texts):
                    choices.append({"index": i * params["n"] + j, "text": (prompt + text) if echo else text,
                                    "finish_reason": "stop", "logprobs": None})
        return {"id": f"cmpl-{uuid.uuid4().hex}", "object": "text_completion", "created": int(time.time()),
                "model": name, "choices": choices, "usage": usage(before)}

    return app


def serve(model_spec: str = "hf:default", host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
          served_model_name: str | None = None) -> None:
    """Load the model once and serve it until interrupted."""
    import uvicorn

    from .clients import get_client

    client = get_client(model_spec, cache=None)
    if not hasattr(client, "token_logprobs"):
        raise ValueError(f"serve-llm serves local models (hf:...), not {model_spec!r}")
    app = create_app(client, served_model_name)
    print(f"serving {served_model_name or client.model} on http://{host}:{port}/v1", flush=True)
    uvicorn.run(app, host=host, port=port, log_level="warning")
