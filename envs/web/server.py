"""``align-gym serve-web``: a web env's pages over HTTP, for people and real browsers.

The server holds one env and shows its current page at ``/`` as HTML in which everything works:
each click or selection is a button, the search box and each text field a form. Every action is a
POST form: ``/act`` (field ``a``, the action), ``/search`` (``q``), ``/type`` (``field`` and
``text``) and ``/reset`` (``seed``, optional: a whole number from 0 to 2**63 - 1; anything else
gets 400 with the reason). Each answers with a redirect (303) back to ``/``, so reloading a page
never repeats an action. The first page of WebShop shows the instruction and the search form;
after buying, the score. Standard library only.

The server runs beside the user's browser, so it refuses what other sites' pages could make that
browser send:

- a request whose ``Host`` does not name this server (``localhost``, an IP address or the name it
  was bound to, with its port) gets 403: a site that points its own name at 127.0.0.1 (DNS
  rebinding) can neither read the pages nor drive the episode;
- an action without the episode's token (a random secret carried by every form of its pages) gets
  403 and changes nothing: another site can post a form here, but it cannot read the token. A new
  episode draws a new token, so a page left open from an earlier episode cannot act either.

>>> app = WebApp("Align/WebForm-v0", seed=1)
>>> "Instruction:" in app.page()
True
"""

from __future__ import annotations

import html
import ipaddress
import re
import secrets
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import gymnasium as gym

from .pages import Page, Text

MAX_SEED = 2**63 - 1  # numpy seeds any non-negative int; this bound keeps a seed one machine word
ACTIONS = ("/act", "/search", "/type", "/reset")
MAX_FORM_BYTES = 64 * 1024  # a form holds an action and a token; a search query is a line of text


class Refused(Exception):
    """A request the server turns down: the HTTP status and the reason shown for it."""

    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status = status
        self.reason = reason


def parse_seed(text: str) -> int:
    """The seed ``text`` names: ASCII digits only, at most 2**63 - 1, else ValueError saying so.

    ``str.isdigit`` and ``int`` are not enough: both take digits such as ``²`` or ``٣``, and
    ``int`` refuses more than 4,300 digits with an error of its own."""
    if not re.fullmatch(r"[0-9]{1,20}", text) or int(text) > MAX_SEED:
        shown = text if len(text) <= 24 else text[:24] + "..."
        raise ValueError(f"a seed is a whole number from 0 to 2**63 - 1 written in digits 0-9, got {shown!r}")
    return int(text)


def check_seed(seed: int) -> int:
    """``seed`` if it is a whole number from 0 to 2**63 - 1, else ValueError saying so."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise ValueError(f"a seed is a whole number from 0 to 2**63 - 1, got {seed!r}")
    return seed


def host_names_server(host_header: str | None, bound_host: str, port: int) -> bool:
    """Whether a request's ``Host`` header names this server: ``localhost``, an IP address or
    ``bound_host``, with ``port``. An IP address is safe to take: DNS rebinding needs a name."""
    match = re.fullmatch(r"(?P<name>[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::(?P<port>[0-9]{1,5}))?", host_header or "")
    if not match or int(match["port"] or 80) != port:
        return False
    name = match["name"].strip("[]").lower()
    if name in ("localhost", bound_host.lower()):
        return True
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def live_html(page: Page, token: str) -> str:
    """``page`` as HTML that works against this server: every action a POST form with ``token``."""
    hidden = f'<input type="hidden" name="token" value="{html.escape(token)}">'

    def button(action: str, text: str, selected: bool) -> str:
        mark = ' class="selected"' if selected else ""
        return (f'<form method="post" action="/act" class="act">{hidden}<button type="submit" name="a" '
                f'value="{html.escape(action)}"{mark}>{html.escape(text)}</button></form>')

    out = [f"<h1>{html.escape(page.title)}</h1>"]
    for part in page.parts:
        if isinstance(part, Text):
            out.append(f"<p>{html.escape(part.text)}</p>")
        elif part.kind == "search":
            out.append(f'<form method="post" action="/search">{hidden}<input type="text" name="q" id="search">'
                       '<button type="submit" id="search-button">Search</button></form>')
        elif part.kind == "input":
            label = html.escape(part.label)
            out.append(f'<form method="post" action="/type">{hidden}<input type="hidden" name="field" value="{label}">'
                       f'<label>{label} <input type="text" name="text" value="{html.escape(part.value)}"></label>'
                       '<button type="submit">Enter</button></form>')
        elif part.kind == "option":
            out.append(button(f"select[{part.label}]", f"({'*' if part.selected else ' '}) {part.label}", part.selected))
        else:  # button, link, choice: all clicked
            out.append(button(f"click[{part.label}]", part.label, part.selected))
    out.append(f'<form method="post" action="/reset" id="reset">{hidden}<label>Seed <input type="text" name="seed" '
               'inputmode="numeric" pattern="[0-9]*" placeholder="next"></label>'
               '<button type="submit">New episode</button></form>')
    return "\n".join(out)


class WebApp:
    """One env, the episode's token and the actions the pages send (thread-safe: one at a time)."""

    def __init__(self, env_id: str, seed: int = 0, **env_kwargs: Any):
        from ...agents.session import check_text_env_id

        check_text_env_id(env_id)
        check_seed(seed)
        self.env = gym.make(env_id, **env_kwargs)
        if not hasattr(self.env.unwrapped, "page"):
            raise ValueError(f"{env_id} has no web pages to serve; serve-web takes Align/WebShop-v0 or Align/WebForm-v0")
        self.lock = threading.Lock()
        self._start(seed)

    def _start(self, seed: int | None) -> None:
        self.env.reset(seed=seed)
        self.token = secrets.token_urlsafe(16)
        self.message, self.done, self.total = "", False, 0.0

    def _check(self, token: str) -> None:
        if not secrets.compare_digest(token.encode(), self.token.encode()):
            raise Refused(403, "This form does not carry the current episode's token (a page from another site, "
                               "or from an earlier episode): reload the page and try again.")

    def reset(self, seed: int | None, token: str) -> None:
        """Start another episode (from ``seed`` if given) for a form of the current episode."""
        with self.lock:
            self._check(token)
            self._start(seed)

    def act(self, action: str, token: str) -> None:
        """Take ``action`` for a form of the current episode."""
        with self.lock:
            self._check(token)
            if self.done:
                self.message = "The episode is over: start a new one."
                return
            _, reward, terminated, truncated, info = self.env.step(action)
            self.total += reward
            self.done = terminated or truncated
            self.message = info.get("invalid_action", "")

    def page(self) -> str:
        with self.lock:
            body = live_html(self.env.unwrapped.page(), self.token)
            status = f'<p class="message">{html.escape(self.message)}</p>' if self.message else ""
            if self.done:
                status += (f'<p id="episode-end">Episode over: reward {self.total:.2f}. '
                           "Start a new episode below.</p>")
        return ("<!doctype html><html><head><meta charset='utf-8'><title>align-gym</title>"
                "<style>body{font-family:sans-serif;max-width:46em;margin:2em auto}form{margin:.3em 0}"
                "form.act{display:inline-block;margin:.2em .4em .2em 0}.selected{font-weight:bold}"
                "#reset{margin-top:2em}.message{color:#a00}</style></head><body>"
                f"{status}{body}</body></html>")


def handler_for(app: WebApp, host: str, port: int) -> type[BaseHTTPRequestHandler]:
    """The request handler serving ``app`` on ``host``:``port`` (the pair the Host check takes)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
            try:
                self._check_host()
                path = urlsplit(self.path).path
                if path == "/":
                    return self._send(200, app.page())
                if path in ACTIONS:
                    raise Refused(405, f"{path} takes a POST form: use the buttons and forms of the page.")
                raise Refused(404, "No such page.")
            except Refused as refusal:
                self._refuse(refusal)

        def do_POST(self) -> None:  # noqa: N802
            try:
                self._check_host()
                path = urlsplit(self.path).path
                if path not in ACTIONS:
                    raise Refused(404, "No such page.")
                form = self._form()
                token = form.get("token", "")
                if path == "/act":
                    app.act(form.get("a", ""), token)
                elif path == "/search":
                    app.act(f"search[{form.get('q', '')}]", token)
                elif path == "/type":
                    app.act(f"type[{form.get('field', '')}={form.get('text', '')}]", token)
                else:
                    seed = form.get("seed", "").strip()
                    try:
                        seed = parse_seed(seed) if seed else None
                    except ValueError as error:
                        raise Refused(400, str(error)) from None
                    app.reset(seed, token)
            except Refused as refusal:
                return self._refuse(refusal)
            self.send_response(303)  # back to the page: reloading it repeats nothing
            self.send_header("Location", "/")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def _check_host(self) -> None:
            if not host_names_server(self.headers.get("Host"), host, port):
                raise Refused(403, f"The Host header ({self.headers.get('Host')!r}) does not name this server: "
                                   f"open it as http://127.0.0.1:{port}/ or http://localhost:{port}/.")

        def _form(self) -> dict[str, str]:
            """The posted form's fields (the first value of each)."""
            length = self.headers.get("Content-Length", "")
            if not re.fullmatch(r"[0-9]{1,9}", length):
                raise Refused(411, "A form needs a Content-Length.")
            if int(length) > MAX_FORM_BYTES:
                raise Refused(413, f"A form is at most {MAX_FORM_BYTES} bytes.")
            try:
                fields = parse_qs(self.rfile.read(int(length)).decode(), keep_blank_values=True, errors="strict",
                                  max_num_fields=16)
            except ValueError as error:  # undecodable text, too many fields
                raise Refused(400, f"Not a form: {error}") from None
            return {name: values[0] for name, values in fields.items()}

        def _refuse(self, refusal: Refused) -> None:
            self.close_connection = True  # the request's body may be unread
            self._send(refusal.status, f"<!doctype html><p>{html.escape(refusal.reason)} <a href='/'>Back</a></p>",
                       allow="POST" if refusal.status == 405 else None)

        def _send(self, code: int, text: str, allow: str | None = None) -> None:
            data = text.encode()
            self.send_response(code)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            if allow:
                self.send_header("Allow", allow)
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:  # quiet: a browser asks for a lot
            pass

    return Handler


def serve(env_id: str, seed: int = 0, host: str = "127.0.0.1", port: int = 8080, **env_kwargs: Any) -> None:
    """Serve ``env_id`` until interrupted."""
    app = WebApp(env_id, seed, **env_kwargs)
    server = ThreadingHTTPServer((host, port), BaseHTTPRequestHandler)
    port = server.server_address[1]  # the one bound (port 0 asks for any free one)
    server.RequestHandlerClass = handler_for(app, host, port)
    print(f"serving {env_id} (seed {seed}) on http://{host}:{port}/", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
