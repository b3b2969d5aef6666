"""Tool calls as text: one JSON object ``{"name": ..., "arguments": {...}}`` per action.

:func:`parse_call` reads the first JSON object in a command (so a model's surrounding words or
code fences do no harm) and checks it against the tools' argument names; its errors are the
messages the envs return as ``info["invalid_action"]``. :func:`format_call` writes the canonical
form the envs list in ``info["valid_actions"]``.

>>> parse_call('Sure: {"name": "calculator", "arguments": {"expression": "2 + 3"}}', {"calculator": {"expression"}})
('calculator', {'expression': '2 + 3'})
>>> format_call("answer", {"value": 5})
'{"name": "answer", "arguments": {"value": 5}}'
"""

from __future__ import annotations

import json
from typing import Any


class CallError(ValueError):
    """A command that is not a well-formed call of one of the tools (the message says why)."""


def format_call(name: str, arguments: dict[str, Any]) -> str:
    """The canonical text of a call."""
    return json.dumps({"name": name, "arguments": arguments})


def parse_call(command: str, tools: dict[str, set[str]]) -> tuple[str, dict[str, Any]]:
    """``(name, arguments)`` of the call in ``command``; :class:`CallError` if malformed.

    ``tools`` maps each tool's name to its argument names (all required, no others allowed).
    """
    start = command.find("{")
    if start < 0:
        raise CallError('Not a tool call: write one JSON object, {"name": <tool>, "arguments": {...}}.')
    try:
        call, _ = json.JSONDecoder().raw_decode(command[start:])
    except json.JSONDecodeError as error:
        raise CallError(f"Malformed JSON: {error.msg} at character {error.pos}.") from None
    if not isinstance(call, dict) or not isinstance(call.get("name"), str):
        raise CallError('A call needs a "name": one of ' + ", ".join(sorted(tools)) + ".")
    name, arguments = call["name"], call.get("arguments", {})
    if name not in tools:
        raise CallError(f"Unknown tool {name[:40]!r}: use one of {', '.join(sorted(tools))}.")
    if not isinstance(arguments, dict):
        raise CallError(f'"arguments" of {name} must be an object with {", ".join(sorted(tools[name])) or "no keys"}.')
    missing, extra = tools[name] - set(arguments), set(arguments) - tools[name]
    if missing or extra:
        wanted = ", ".join(sorted(tools[name])) or "no arguments"
        raise CallError(f"{name} takes {wanted}; got {', '.join(sorted(map(str, arguments))) or 'none'}.")
    return name, arguments
