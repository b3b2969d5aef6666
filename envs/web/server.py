"""``align-gym serve-web``: a web env's pages over HTTP, for people and real browsers.

The server holds one env and shows its current page as HTML in which everything works: links for
clicks and selections (``/act?a=click[...]``), a form for the search box (``/search?q=...``) and for
each text field (``/type?field=...&text=...``). Each action redirects back to ``/``, so reloading a
page never repeats an action. ``/reset?seed=N`` starts another episode. The first page of WebShop
shows the instruction and the search form; after buying, the score. Standard library only.

>>> app = WebApp("Align/WebForm-v0", seed=1)
>>> "Instruction:" in app.page()
True
"""

from __future__ import annotations

import html
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

import gymnasium as gym


class WebApp:
    """One env and the actions the pages send it (thread-safe: one action at a time)."""

    def __init__(self, env_id: str, seed: int = 0, **env_kwargs: Any):
        from ...agents.session import check_text_env_id

        check_text_env_id(env_id)
        self.env = gym.make(env_id, **env_kwargs)
        if not hasattr(self.env.unwrapped, "page"):
            raise ValueError(f"{env_id} has no web pages to serve; serve-web takes Align/WebShop-v0 or Align/WebForm-v0")
        self.lock = threading.Lock()
        self.reset(seed)

    def reset(self, seed: int | None) -> None:
        with self.lock:
            self.env.reset(seed=seed)
            self.message, self.done, self.total = "", False, 0.0

    def act(self, action: str) -> None:
        with self.lock:
            if self.done:
                self.message = "The episode is over: start a new one."
                return
            _, reward, terminated, truncated, info = self.env.step(action)
            self.total += reward
            self.done = terminated or truncated
            self.message = info.get("invalid_action", "")

    def page(self) -> str:
        with self.lock:
            body = self.env.unwrapped.page().html(live=True)
            status = f'<p class="message">{html.escape(self.message)}</p>' if self.message else ""
            if self.done:
                status += (f'<p id="episode-end">Episode over: reward {self.total:.2f}. '
                           '<a href="/reset">Start a new episode</a></p>')
        return ("<!doctype html><html><head><meta charset='utf-8'><title>align-gym</title>"
                "<style>body{font-family:sans-serif;max-width:46em;margin:2em auto}a{margin-right:.6em}"
                ".selected{font-weight:bold}.message{color:#a00}</style></head><body>"
                f"{status}{body}</body></html>")


def handler_for(app: WebApp) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
            url = urlparse(self.path)
            query = {key: values[0] for key, values in parse_qs(url.query).items()}
            if url.path == "/":
                return self._send(200, app.page())
            if url.path == "/act" and "a" in query:
                app.act(query["a"])
            elif url.path == "/search":
                app.act(f"search[{query.get('q', '')}]")
            elif url.path == "/type":
                app.act(f"type[{query.get('field', '')}={query.get('text', '')}]")
            elif url.path == "/reset":
                seed = query.get("seed")
                app.reset(int(seed) if seed and seed.isdigit() else None)
            else:
                return self._send(404, "<p>No such page. <a href='/'>Back</a></p>")
            self.send_response(303)
            self.send_header("Location", "/")
            self.end_headers()

        def _send(self, code: int, text: str) -> None:
            data = text.encode()
            self.send_response(code)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:  # quiet: a browser asks for a lot
            pass

    return Handler


def serve(env_id: str, seed: int = 0, host: str = "127.0.0.1", port: int = 8080, **env_kwargs: Any) -> None:
    """Serve ``env_id`` until interrupted."""
    app = WebApp(env_id, seed, **env_kwargs)
    server = ThreadingHTTPServer((host, port), handler_for(app))
    print(f"serving {env_id} (seed {seed}) on http://{host}:{port}/", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
