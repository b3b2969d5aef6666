"""Strict, total parsers for LLM answers (llm_rewards/parsing.py) and the repair loop."""

import doctest

import pytest

from align_gym.llm_rewards import parsing
from align_gym.llm_rewards.parsing import (
    ParseError,
    ParseOutcome,
    ParseStats,
    parse_bullets,
    parse_choice,
    parse_json,
    parse_label,
    parse_many_with_repair,
    parse_number,
    parse_python_block,
    parse_with_repair,
    repair_prompt,
)
from align_gym.llm_rewards.prompts import PromptTemplate

MOTIF = ["1", "2", "None"]


def test_doctests():
    result = doctest.testmod(parsing, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 10 and result.failed == 0


# ---- totality: every parser answers any input with a value or a ParseError --------------

PARSERS = [
    lambda t: parse_number(t, 0, 10),
    lambda t: parse_choice(t, MOTIF, key="best_description"),
    lambda t: parse_choice(t, ["A", "B", "tie"]),
    parse_json,
    parse_python_block,
    parse_bullets,
    parse_label,
]
JUNK = [None, 7, b"Rating: 7", ["- a"], "", "   \n\t", "\x00\x00", "{", "```python", "<label>", "💥" * 50]


@pytest.mark.parametrize("parser", PARSERS)
@pytest.mark.parametrize("junk", JUNK, ids=repr)
def test_parsers_are_total(parser, junk):
    with pytest.raises(ParseError) as info:
        parser(junk)
    assert info.value.reason and isinstance(info.value, ValueError)


# ---- parse_number ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Rating: 7", 7.0),
        ("7", 7.0),
        ("  8\n", 8.0),
        ("The key was picked up, which is real progress.\nRating: 6", 6.0),
        ("**Rating:** 9", 9.0),
        ("rating = 3 out of 10", 3.0),
        ("Rating: 4/10", 4.0),
        ("I would say 5.", 5.0),
        ("I would say 7/10.", 7.0),
        ("Rating: 2.5", 2.5),
        ("Rating: 0", 0.0),
        ("Rating: 10", 10.0),
        ("Rating: 7\nSo again, Rating: 7", 7.0),  # repeated but agreeing
        ("Step 1: think. Step 2: decide.\nRating: 8", 8.0),  # keyed number wins over others
        ("version v1.2 says 5", 5.0),  # digits glued to words are not numbers
    ],
)
def test_parse_number_good(text, expected):
    assert parse_number(text, 0, 10) == expected


@pytest.mark.parametrize(
    "text, reason",
    [
        ("Rating: 11", "outside [0, 10]"),
        ("Rating: -1", "outside [0, 10]"),
        ("15", "outside"),
        ("Rating: 7\nActually, Rating: 8", "several different 'rating' numbers: 7, 8"),
        ("somewhere between 3 and 4", "several different numbers: 3, 4"),
        ("3/4 of the way there, so 7", "several different numbers"),
        ("Rating: seven", "no number found"),
        ("It is good progress.", "no number found"),
        ("Rating: NaN", "no number"),
        ("Rating: inf", "no number"),
    ],
)
def test_parse_number_rejects(text, reason):
    with pytest.raises(ParseError, match=reason.replace("[", r"\[").replace("]", r"\]")):
        parse_number(text, 0, 10)


def test_parse_number_other_key_and_range():
    assert parse_number("Score: 0.25", 0.0, 1.0, key="score") == 0.25
    assert parse_number("progress 0.5", 0, 1, key=None) == 0.5
    with pytest.raises(ValueError):
        parse_number("5", 10, 0)  # a bad range is the caller's bug, not a parse failure
    with pytest.raises(ParseError):
        parse_number("5", 0, 1)
    # "1e3" is not read as the number 1: only the well-formed keyed number counts
    assert parse_number("Rating: 1e3 is not it; rating: 1", 0, 10) == 1.0


# ---- parse_choice ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        ('("best_description": 1)', "1"),
        ("best_description: 2", "2"),
        ('... so my answer is ("best_description": None).', "None"),
        ("BEST_DESCRIPTION: none", "None"),  # case-insensitive key and choice; canonical spelling back
        ("**best_description**: 2", "2"),
        ("'best_description' = 1", "1"),
        # Motif parses the first match: later keyed answers do not override it.
        ('best_description: 2. Also in another reading ("best_description": 1)', "2"),
        ("best_description: 1, because the key is picked up", "1"),
    ],
)
def test_parse_choice_keyed_good(text, expected):
    assert parse_choice(text, MOTIF, key="best_description") == expected


@pytest.mark.parametrize(
    "text, reason",
    [
        ("best_description: 1 | 2 | None", "ambiguous"),  # the format echoed back
        ("best_description: 1 or 2", "ambiguous"),
        ("best_description: 1/2", "ambiguous"),
        ("best_description: 1 and 2", "ambiguous"),
        ("best description: 1", "no 'best_description: <choice>'"),  # strict about the key
        ("bestdescription: 1", "no 'best_description"),
        ("my_best_description: 1", "no 'best_description"),
        ("best_description: 3", "no 'best_description"),
        ("best_description: 12", "no 'best_description"),  # "1" of "12" is not a choice
        ("Description 1 is best.", "no 'best_description"),
    ],
)
def test_parse_choice_keyed_rejects(text, reason):
    with pytest.raises(ParseError, match=reason):
        parse_choice(text, MOTIF, key="best_description")


def test_parse_choice_unkeyed():
    choices = ["A", "B", "tie"]
    assert parse_choice("B", choices) == "B"
    assert parse_choice("Reasoning first.\n**Tie**.", choices) == "tie"
    assert parse_choice('"a"', choices) == "A"
    # A choice word inside a sentence is not an answer ("a" is also an article).
    with pytest.raises(ParseError, match="no line that is exactly one of A, B, tie"):
        parse_choice("I think a tie is likely, B maybe.", choices)
    with pytest.raises(ParseError):
        parse_choice("A or B", choices)
    # first match wins
    assert parse_choice("A\nB", choices) == "A"
    with pytest.raises(ValueError):
        parse_choice("A", ["A", "a"])
    with pytest.raises(ValueError):
        parse_choice("A", [])


# ---- parse_json --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        ('{"a": 1}', {"a": 1}),
        ('Sure! {"a": 1, "b": [1, 2]} Hope this helps. {"c": 3}', {"a": 1, "b": [1, 2]}),
        ('```json\n{"a": {"nested": true}}\n```\nThat is all.', {"a": {"nested": True}}),
        ('Text with {curly} prose.\n```\n{"a": 1}\n```', {"a": 1}),
        ('The format: use braces.\n{\n  "understanding": "x",\n  "evaluation_func": "def f(s): return {1: 2}"\n}', None),
        ("{}", {}),
    ],
)
def test_parse_json_good(text, expected):
    value = parse_json(text)
    if expected is not None:
        assert value == expected
    else:
        assert set(value) == {"understanding", "evaluation_func"}


@pytest.mark.parametrize(
    "text, reason",
    [
        ("no object here", "no JSON object found"),
        ("{'a': 1}", "no JSON object found"),  # Python dict, single quotes
        ('{"a": 1,}', "malformed JSON"),  # trailing comma
        ('{"a": 1', "malformed JSON"),
        ('{"a": NaN}', "NaN"),
        ('{"a": -Infinity}', "Infinity"),
        ('```json\n{"a": 1}\n{"b": 2}\n```', "more than one object"),
        ('```json\n{"a": 1,}\n```', "malformed JSON in the fenced block"),
        ('{"a": {"b": 1}, oops}', "malformed JSON"),  # never falls back to the inner object
    ],
)
def test_parse_json_rejects(text, reason):
    with pytest.raises(ParseError, match=reason):
        parse_json(text)


def test_parse_json_first_object_rule():
    # the first object, wherever it starts: one inside a list is still the first object
    assert parse_json('[{"a": 1}]') == {"a": 1}
    assert parse_json('{"a": 1} and then {"a": 2}') == {"a": 1}


def test_parse_json_required_keys():
    text = '{"understanding": "u", "analysis": "a"}'
    assert parse_json(text, required_keys=("understanding",))["analysis"] == "a"
    with pytest.raises(ParseError, match="'evaluation_func'"):
        parse_json(text, required_keys=("understanding", "evaluation_func"))


# ---- parse_python_block ------------------------------------------------------------------

GOOD_CODE = "def potential(state):\n    return 0.5 * state['has_key']"


@pytest.mark.parametrize(
    "text",
    [
        f"```python\n{GOOD_CODE}\n```",
        f"Here is the function:\n\n```python\n{GOOD_CODE}\n```\nIt rewards holding the key.",
        f"```Python\n{GOOD_CODE}\n```",
        f"```py\n{GOOD_CODE}\n```",
        f"1. The code:\n   ```python\n   {GOOD_CODE.replace(chr(10), chr(10) + '   ')}\n   ```",  # indented block
        f"```text\nnot this\n```\n```python\n{GOOD_CODE}\n```\n```python\nx = (\n```",  # the first python block
    ],
)
def test_parse_python_block_good(text):
    assert parse_python_block(text, require_function="potential") == GOOD_CODE


@pytest.mark.parametrize(
    "text, reason",
    [
        (GOOD_CODE, "no ```python fenced block"),
        (f"```\n{GOOD_CODE}\n```", "no ```python fenced block"),  # unlabelled fence
        (f"```python\n{GOOD_CODE}\n", "not closed"),
        ("```python\n\n```", "empty"),
        ("```python\ndef potential(state)\n    return 1\n```", "syntax error in the python block, line 1"),
        ("```python\ndef potential(state):\nreturn 1\n```", "syntax error"),
        ("```python\nx = 1\n```", "no top-level function 'potential'"),
        ("```python\nclass A:\n    def potential(self):\n        return 1\n```", "no top-level function"),
    ],
)
def test_parse_python_block_rejects(text, reason):
    with pytest.raises(ParseError, match=reason.replace("(", r"\(")):
        parse_python_block(text, require_function="potential")


# ---- parse_bullets -----------------------------------------------------------------------


def test_parse_bullets():
    assert parse_bullets("- chop tree\n- drink water\n") == ["chop tree", "drink water"]
    assert parse_bullets("\n  - pick up key  \n\n- open door") == ["pick up key", "open door"]
    for bad, reason in [
        ("Here are my suggestions:\n- chop tree", "line 1 is not a '- ' bullet"),
        ("- chop tree\n* drink water", "line 2"),
        ("- chop tree\n1. drink water", "line 2"),
        ("-chop tree", "line 1"),
        ("- chop tree\n- ", "line 2 is an empty bullet"),
        ("- chop tree\nThese will help.", "line 2"),
    ]:
        with pytest.raises(ParseError, match=reason):
            parse_bullets(bad)


# ---- parse_label (ONI) -------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        ("<knowledge>k</knowledge>\n<analysis>a</analysis>\n<label> FOO </label>", True),
        ("<label>BAR</label>", False),
        ("<label>[FOO]</label>", True),
        ("<LABEL> bar. </LABEL>", False),
        ("<label>**FOO**</label>", True),
        ("FOO is what I'd like to say, but <label>BAR</label>", False),  # the token outside the tag does not count
    ],
)
def test_parse_label_good(text, expected):
    assert parse_label(text) is expected


@pytest.mark.parametrize(
    "text, reason",
    [
        ("<label>not FOO, BAR</label>", "exactly FOO or BAR"),  # ONI's code would call this helpful
        ("<label>not FOO</label>", "exactly FOO or BAR"),
        ("<label>FOO/BAR</label>", "exactly FOO or BAR"),
        ("<label>FOOD</label>", "exactly FOO or BAR"),
        ("<label></label>", "exactly FOO or BAR"),
        ("FOO", "no <label>"),  # merely containing the positive token
        ("This message is FOO-worthy: helpful.", "no <label>"),
        ("<label>FOO", "no <label>"),  # unclosed
        ("<label> [FOO/BAR] </label>\n<label> FOO </label>", "2 <label> elements"),
    ],
)
def test_parse_label_rejects(text, reason):
    with pytest.raises(ParseError, match=reason):
        parse_label(text)


def test_parse_label_custom_tokens():
    assert parse_label("<label>helpful</label>", positive="helpful", negative="unhelpful") is True
    with pytest.raises(ParseError):
        parse_label("<label>FOO</label>", positive="helpful", negative="unhelpful")
    with pytest.raises(ValueError):
        parse_label("<label>x</label>", positive="X", negative="x")


# ---- parse_with_repair -------------------------------------------------------------------


class FakeGenerator:
    """A FAKE model (no LLM): answers come from a script; records every prompt it gets."""

    def __init__(self, answers):
        self.answers = list(answers)
        self.prompts = []

    def __call__(self, prompts):
        self.prompts.append(list(prompts))
        return [self.answers.pop(0) for _ in prompts]


def rate(text):
    return parse_number(text, 0, 10)


def test_repair_bad_then_good():
    fake = FakeGenerator(["I like it a lot.", "Rating: 8"])
    stats = ParseStats()
    out = parse_with_repair(fake, "Rate the caption.", rate, answer_format="Rating: N", stats=stats)
    assert (out.ok, out.value, out.attempts, out.repaired) == (True, 8.0, 2, True)
    assert out.errors == ["no number found"]
    assert out.answers == ["I like it a lot.", "Rating: 8"]
    repair = fake.prompts[1][0]
    # the repair prompt keeps the question, quotes the bad answer and the reason, states the format
    assert repair.startswith("Rate the caption.")
    assert "I like it a lot." in repair and "no number found" in repair and "Rating: N" in repair
    assert stats.as_dict()["repaired"] == 1 and stats.ok == 0 and stats.failed == 0


def test_repair_always_bad_counts_failure_without_raising():
    fake = FakeGenerator(["great"] * 10)
    stats = ParseStats()
    out = parse_with_repair(fake, "Rate it.", rate, max_repairs=2, stats=stats)
    assert out == ParseOutcome(value=None, ok=False, attempts=3, errors=["no number found"] * 3, answers=["great"] * 3)
    assert len(fake.prompts) == 3
    assert (stats.ok, stats.repaired, stats.failed, stats.repair_calls) == (0, 0, 1, 2)
    # max_repairs=0: a single try, no repair prompt
    fake0 = FakeGenerator(["great"])
    assert parse_with_repair(fake0, "Rate it.", rate, max_repairs=0).attempts == 1


def test_repair_good_first_time_and_chat_prompts():
    fake = FakeGenerator(["<label>BAR</label>"])
    chat = [{"role": "system", "content": "s"}, {"role": "user", "content": "Label it."}]
    out = parse_with_repair(fake, chat, parse_label)
    assert (out.ok, out.value, out.attempts, out.repaired) == (True, False, 1, False)
    fake = FakeGenerator(["FOO", "<label>FOO</label>"])
    out = parse_with_repair(fake, chat, parse_label)
    assert out.value is True and out.attempts == 2
    followup = fake.prompts[1][0]
    assert [m["role"] for m in followup] == ["system", "user", "assistant", "user"]
    assert followup[2]["content"] == "FOO" and "no <label>" in followup[3]["content"]
    assert chat == [{"role": "system", "content": "s"}, {"role": "user", "content": "Label it."}]  # not mutated


def test_repair_many_batches_only_failures():
    fake = FakeGenerator(["Rating: 1", "bad", "Rating: 3", "Rating: 2"])
    outs = parse_many_with_repair(fake, ["p1", "p2", "p3"], rate)
    assert [o.value for o in outs] == [1.0, 2.0, 3.0]
    assert [len(batch) for batch in fake.prompts] == [3, 1]  # only the failed prompt is repaired
    stats = ParseStats()
    for o in outs:
        stats.add(o)
    total = ParseStats()
    total.update(stats)
    total.update(stats)
    assert (total.ok, total.repaired, total.total) == (4, 2, 6)


def test_repair_accepts_client_style_lists_and_propagates_generator_errors():
    def fake_client(prompts):  # FAKE client returning list[list[str]] (n=1), as the protocol does
        return [["Rating: 5"] for _ in prompts]

    assert parse_with_repair(fake_client, "p", rate).value == 5.0

    def fake_broken(prompts):  # FAKE generator whose transport fails: not a parse failure
        raise ConnectionError("server down")

    with pytest.raises(ConnectionError):
        parse_with_repair(fake_broken, "p", rate)
    with pytest.raises(ValueError, match="2 completions for 1 prompts"):
        parse_with_repair(lambda ps: ["a", "b"], "p", rate)

    def fake_non_string(prompts):  # FAKE generator returning junk: a counted failure
        return [None for _ in prompts]

    out = parse_with_repair(fake_non_string, "p", rate, max_repairs=1)
    assert not out.ok and out.attempts == 2 and "string" in out.errors[0]


def test_repair_prompt_quotes_and_truncates():
    long = "x" * 5000
    text = repair_prompt("Q", long, "no number found", max_quote_chars=100)
    assert "x" * 100 in text and "x" * 101 not in text and "4900 more characters cut" in text
    custom = PromptTemplate(name="fix", version=1, description="d", template="Bad: $answer ($error) -> $answer_format")
    assert repair_prompt("Q", "a", "b", repair_template=custom, answer_format="c") == "Q\n\nBad: a (b) -> c"
