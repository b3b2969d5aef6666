"""Tool calls as text: one JSON object ``{"name": ..., "arguments": {...}}`` per action.

:func:`parse_call` reads the first JSON object in a command (so a model's surrounding words or
code fences do no harm) and checks it against the tools' argument names; its errors are the
messages the envs return as ``info["invalid_action"]``. It is total: whatever the string (deep
nesting, a number too long to read, non-ASCII, NUL), it returns a call or raises :class:`CallError`,
and its messages echo the player's words only through :func:`~align_gym.envs.text.core.quote`.
Every argument's value is a JSON scalar (a string, number, boolean or null), so no tool receives a
nested structure. :func:`format_call` writes the canonical form the envs list in
``info["valid_actions"]``.

>>> tools = {"calculator": Tool("Evaluate an expression.", {"expression": ("string", "e.g. '2 + 3'")})}
>>> parse_call('Sure: {"name": "calculator", "arguments": {"expression": "2 + 3"}}', tools)
('calculator', {'expression': '2 + 3'})
>>> format_call("answer", {"value": 5})
'{"name": "answer", "arguments": {"value": 5}}'
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..text.core import quote

JSON_TYPES = {"string": str, "number": float, "integer": int, "boolean": bool}


@dataclass(frozen=True)
class Tool:
    """One tool of a tool env: what it does, and each argument's JSON type (a key of
    :data:`JSON_TYPES`) and meaning. Every argument is required. The trainer adapters turn this
    into the typed, documented methods that TRL shows the model as its tools."""

    description: str
    arguments: dict[str, tuple[str, str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name, (kind, _) in self.arguments.items():
            if kind not in JSON_TYPES:
                raise ValueError(f"argument {name!r} has JSON type {kind!r}; use one of {', '.join(JSON_TYPES)}")


class CallError(ValueError):
    """A command that is not a well-formed call of one of the tools (the message says why)."""


def format_call(name: str, arguments: dict[str, Any]) -> str:
    """The canonical text of a call."""
    return json.dumps({"name": name, "arguments": arguments})


def parse_call(command: str, tools: Mapping[str, Tool]) -> tuple[str, dict[str, Any]]:
    """``(name, arguments)`` of the call in ``command``; :class:`CallError` if malformed.

    ``tools`` maps each tool's name to its :class:`Tool` (every argument required, no others allowed).
    """
    start = command.find("{")
    if start < 0:
        raise CallError('Not a tool call: write one JSON object, {"name": <tool>, "arguments": {...}}.')
    try:
        call, _ = json.JSONDecoder().raw_decode(command[start:])
    except json.JSONDecodeError as error:
        raise CallError(f"Malformed JSON: {error.msg} at character {error.pos}.") from None
    except RecursionError:  # the decoder recurses once per level of nesting
        raise CallError("Malformed JSON: nested too deeply.") from None
    except ValueError:  # an integer longer than Python converts (sys.get_int_max_str_digits())
        raise CallError("Malformed JSON: a number too long to read.") from None
    if not isinstance(call, dict) or not isinstance(call.get("name"), str):
        raise CallError('A call needs a "name": one of ' + ", ".join(sorted(tools)) + ".")
    name, arguments = call["name"], call.get("arguments", {})
    if name not in tools:
        raise CallError(f"Unknown tool {quote(name, 20)}: use one of {', '.join(sorted(tools))}.")
    if not isinstance(arguments, dict):
        raise CallError(f'"arguments" of {name} must be an object with {", ".join(sorted(tools[name].arguments)) or "no keys"}.')
    expected = set(tools[name].arguments)
    missing, extra = expected - set(arguments), set(arguments) - expected
    if missing or extra:
        wanted = ", ".join(sorted(expected)) or "no arguments"
        got = ", ".join(quote(key, 12) for key in sorted(arguments)[:3]) + (", ..." if len(arguments) > 3 else "")
        raise CallError(f"{name} takes {wanted}; got {got or 'none'}.")
    for key, value in arguments.items():
        if isinstance(value, (dict, list)):
            kind = tools[name].arguments[key][0]
            raise CallError(f"{name}'s {key} must be a {kind}, not {'an object' if isinstance(value, dict) else 'a list'}.")
    return name, arguments
