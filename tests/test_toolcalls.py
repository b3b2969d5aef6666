"""Tool calls: the parser is total (every string gives a call or a CallError with a message) and
echoes the player's words only short and in ASCII."""

import json

import pytest

from align_gym.envs.text.core import CHARSET
from align_gym.envs.tools.calls import CallError, Tool, parse_call

TOOLS = {"answer": Tool("Answer.", {"value": ("number", "the answer")}),
         "search": Tool("Search.", {"query": ("string", "what to look for")})}
HOSTILE = {
    "10000 deep arrays": ("[" * 10_000 + "]" * 10_000, "Not a tool call"),
    "10000 deep objects": ('{"a": ' * 10_000 + "1" + "}" * 10_000, "nested too deeply"),
    "deep arguments": ('{"name": "answer", "arguments": ' + "[" * 10_000, "nested too deeply"),
    "5000 digits": ('{"name": "answer", "arguments": {"value": ' + "9" * 5000 + "}}", "number too long"),
    "nested value": ('{"name": "answer", "arguments": {"value": [[[1]]]}}', "answer's value must be a number, not a list"),
    "object value": ('{"name": "search", "arguments": {"query": {"a": 1}}}', "search's query must be a string, not an object"),
    "non-ASCII tool": (json.dumps({"name": "ключ" * 100, "arguments": {}}, ensure_ascii=False), "Unknown tool '\\u043a"),
    "NUL tool": ('{"name": "answer\x00", "arguments": {}}', "Malformed JSON"),
    "escaped NUL tool": ('{"name": "answer\\u0000", "arguments": {}}', "Unknown tool 'answer\\x00'"),
    "lone surrogate": ('{"name": "\\udcff", "arguments": {}}', "Unknown tool '\\udcff'"),
    "many keys": (json.dumps({"name": "answer", "arguments": {f"k{i}" + "é" * 50: i for i in range(1000)}}, ensure_ascii=False),
                  "answer takes value; got 'k0\\xe9"),
}


@pytest.mark.parametrize("command, message", HOSTILE.values(), ids=HOSTILE.keys())
def test_every_malformed_string_is_a_call_error_with_a_short_ascii_message(command, message):
    with pytest.raises(CallError) as refused:
        parse_call(command, TOOLS)
    text = str(refused.value)
    assert message in text and set(text) <= set(CHARSET) and len(text) < 300, text[:300]


def test_scalar_arguments_of_any_json_type_are_read_as_written():
    for value in ["91", 91, 91.5, True, None, "ключ"]:
        command = json.dumps({"name": "answer", "arguments": {"value": value}})
        assert parse_call(command, TOOLS) == ("answer", {"value": value})
