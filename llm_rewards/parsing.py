"""Strict, total parsers for LLM answers, and a repair loop that never raises on bad output.

Every parser takes the raw completion text and either returns a value or raises
:class:`ParseError` whose ``reason`` says what was wrong (the reason is quoted back to the model by
:func:`parse_with_repair`). Parsers are *total*: any input, ``None`` and non-strings included,
gives a value or a ``ParseError``, never another exception.

Strictness is deliberate (DESIGN.md, "LLM layer"): an answer that is ambiguous is rejected, never
guessed. Malformed answers are counted (:class:`ParseStats`) and retried or dropped by the caller.

>>> parse_number("The key is picked up.\\nRating: 7", 0, 10)
7.0
>>> parse_choice('So ("best_description": 2).', ["1", "2", "None"], key="best_description")
'2'
>>> parse_label("<analysis>...</analysis>\\n<label> FOO </label>")
True
>>> try:
...     parse_label("<label>not FOO, BAR</label>")
... except ParseError as err:
...     print(err)
<label> must hold exactly FOO or BAR, got 'not FOO, BAR'
>>> parse_bullets("- pick up key\\n- open door")
['pick up key', 'open door']
"""

from __future__ import annotations

import ast
import json
import math
import re
import textwrap
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

__all__ = [
    "ParseError",
    "ParseOutcome",
    "ParseStats",
    "parse_bullets",
    "parse_choice",
    "parse_json",
    "parse_label",
    "parse_many_with_repair",
    "parse_number",
    "parse_python_block",
    "parse_with_repair",
    "repair_prompt",
]

T = TypeVar("T")

#: A prompt as the clients take it: plain text, or chat messages ``{"role", "content"}``.
Prompt = str | list[dict[str, str]]


class ParseError(ValueError):
    """An LLM answer that does not have the required form; ``reason`` says what was wrong.

    >>> try:
    ...     parse_number("no digits here", 0, 10)
    ... except ParseError as err:
    ...     print(err.reason)
    no number found
    """

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def _text(text: object) -> str:
    if not isinstance(text, str):
        raise ParseError(f"expected the answer as a string, got {type(text).__name__}")
    if not text.strip():
        raise ParseError("the answer is empty")
    return text


def _excerpt(text: str, limit: int = 60) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --------------------------------------------------------------------------------------------
# numbers

# A number not glued to a word or another number: "7", "-2", "7.5"; not the "2" of "step2" or
# "v1.2.3", and "7." at a sentence's end is 7.
_NUM = r"[-+]?(?:\d+(?:\.\d+)?|\.\d+)"
_NUM_RE = re.compile(rf"(?<![\w.]){_NUM}(?![\w]|\.\d)")


def parse_number(text: str, low: float, high: float, *, key: str | None = "rating") -> float:
    """The one number an answer gives, checked to lie in ``[low, high]``.

    With ``key`` (default ``"rating"``, case-insensitive), every ``key: N`` in the answer counts
    (``Rating: 7``, ``**Rating:** 7/10``, ``rating = 7 out of 10``): they must all agree. With no
    keyed number (or ``key=None``), the answer must contain exactly one distinct number (``"7"``,
    ``"I would say 7."``, ``"7/10"`` when ``high`` is 10). Rejected: no number, several different numbers, a number outside
    ``[low, high]``, NaN or infinity.

    >>> parse_number("Rating: 7", 0, 10)
    7.0
    >>> parse_number("  8\\n", 0, 10)
    8.0
    >>> parse_number("**Rating:** 6/10", 0, 10)
    6.0
    >>> try:
    ...     parse_number("Rating: 11", 0, 10)
    ... except ParseError as err:
    ...     print(err)
    number 11 is outside [0, 10]
    >>> try:
    ...     parse_number("I'd say 3, maybe 4", 0, 10)
    ... except ParseError as err:
    ...     print(err)
    several different numbers: 3, 4
    """
    text = _text(text)
    if not (math.isfinite(low) and math.isfinite(high) and low <= high):
        raise ValueError(f"need finite low <= high, got [{low}, {high}]")
    found: list[str] = []
    if key:
        keyed = re.compile(
            rf"(?<![A-Za-z0-9_]){re.escape(key)}[\s*_]*[:=][\s*_]*({_NUM})(?![\w]|\.\d)"
            rf"(?:\s*(?:/|out\s+of)\s*{_NUM})?",
            re.IGNORECASE,
        )
        found = [m.group(1) for m in keyed.finditer(text)]
        what = f"'{key}' numbers"
    if not found:
        # "7/10" and "7 out of 10" give one number when the denominator is the scale's top.
        scale = re.compile(rf"(?<=\d)\s*(?:/|out\s+of)\s*({_NUM})(?![\w]|\.\d)", re.IGNORECASE)
        bare = scale.sub(lambda m: "" if float(m.group(1)) == high else m.group(0), text)
        found = _NUM_RE.findall(bare)
        what = "numbers"
    if not found:
        raise ParseError("no number found")
    values = []
    for raw in found:
        value = float(raw)
        if value not in values:
            values.append(value)
    if len(values) > 1:
        shown = ", ".join(_fmt(v) for v in values[:5])
        raise ParseError(f"several different {what}: {shown}")
    value = values[0]
    if not math.isfinite(value):
        raise ParseError(f"number {value} is not finite")
    if not low <= value <= high:
        raise ParseError(f"number {_fmt(value)} is outside [{_fmt(low)}, {_fmt(high)}]")
    return value


def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(float(x))


# --------------------------------------------------------------------------------------------
# choices


def parse_choice(text: str, choices: Sequence[str], *, key: str | None = None) -> str:
    """One of ``choices`` (returned as spelt in ``choices``), matched case-insensitively.

    With ``key`` (e.g. Motif's ``"best_description"``): the first ``key: choice`` in the answer
    wins, whatever follows (Motif parses the first match). The key must be spelt exactly (quotes,
    parentheses, ``*`` and spaces around it and the ``:`` or ``=`` are fine: ``("best_description":
    1)``); ``best description: 1`` does not count. A keyed choice followed by an alternative
    (``best_description: 1 | 2``, ``1 or 2``) is ambiguous and rejected.

    Without ``key``: the first line of the answer that is, apart from whitespace, quotes, ``*``,
    brackets and a final ``.``, exactly one choice (``"B"``, ``"**tie**."``). A choice inside a
    sentence does not count ("a" would match the article).

    >>> parse_choice('... ("best_description": None)', ["1", "2", "None"], key="best_description")
    'None'
    >>> try:
    ...     parse_choice("best_description: 1 | 2 | None", ["1", "2", "None"], key="best_description")
    ... except ParseError as err:
    ...     print(err)
    ambiguous answer 'best_description: 1 | 2': give exactly one of 1, 2, None
    >>> parse_choice("Both are fine.\\n**B**", ["A", "B", "tie"])
    'B'
    """
    text = _text(text)
    choices = list(choices)
    if not choices or not all(isinstance(c, str) and c.strip() for c in choices):
        raise ValueError(f"choices must be non-empty strings, got {choices!r}")
    lowered = {c.lower(): c for c in choices}
    if len(lowered) != len(choices):
        raise ValueError(f"choices must differ ignoring case, got {choices!r}")
    alts = "|".join(re.escape(c) for c in sorted(choices, key=len, reverse=True))
    listed = ", ".join(choices)
    if key:
        pattern = re.compile(
            rf"(?<![A-Za-z0-9_]){re.escape(key)}[\"'`*\s]*[:=][\"'`*\s(\[]*({alts})(?![A-Za-z0-9_])"
            rf"(\s*(?:\||/|,|\bor\b|\band\b)\s*[\"'`*(\[]*(?:{alts})(?![A-Za-z0-9_]))?",
            re.IGNORECASE,
        )
        match = pattern.search(text)
        if match is None:
            raise ParseError(f"no '{key}: <choice>' with a choice among {listed}")
        if match.group(2):
            raise ParseError(
                f"ambiguous answer {_excerpt(match.group(0).strip())!r}: give exactly one of {listed}"
            )
        return lowered[match.group(1).lower()]
    for line in text.splitlines():
        bare = line.strip().strip("\"'`*_()[]{} \t").rstrip(".").strip("\"'`*_()[]{} \t")
        if bare.lower() in lowered:
            return lowered[bare.lower()]
    raise ParseError(f"no line that is exactly one of {listed}")


# --------------------------------------------------------------------------------------------
# JSON

_FENCE_RE = re.compile(r"^[ \t]*```[ \t]*([A-Za-z0-9_+-]*)[^\n]*\n(.*?)^[ \t]*```", re.DOTALL | re.MULTILINE)


def _reject_constant(name: str) -> Any:
    raise ParseError(f"JSON may not hold {name}")


def parse_json(text: str, required_keys: Iterable[str] = ()) -> dict[str, Any]:
    """The first JSON object in an answer, fenced (```json ... ```) or not.

    A fenced block that starts with ``{`` is taken first and must hold one object and nothing
    else. Otherwise the first ``{`` that opens a JSON object (followed by ``"`` or ``}``) starts
    it; text after the object is ignored. Rejected: no object, a malformed one (the JSON error is
    named: single quotes, trailing commas...), NaN or Infinity, a missing required key.

    >>> parse_json('Here you go: {"score": 1, "why": "key"} Hope this helps!')
    {'score': 1, 'why': 'key'}
    >>> try:
    ...     parse_json('```json\\n{"a": 1}\\n```', required_keys=["a", "b"])
    ... except ParseError as err:
    ...     print(err)
    JSON object lacks required key(s): 'b'
    """
    text = _text(text)
    decoder = json.JSONDecoder(parse_constant=_reject_constant)
    obj: Any = None
    for fence in _FENCE_RE.finditer(text):
        body = fence.group(2).strip()
        if fence.group(1).lower() in ("json", "") and body.startswith("{"):
            try:
                obj, end = decoder.raw_decode(body)
            except json.JSONDecodeError as err:
                raise ParseError(f"malformed JSON in the fenced block: {err}") from None
            if body[end:].strip():
                raise ParseError(
                    f"the fenced JSON block holds more than one object: {_excerpt(body[end:].strip())!r}"
                )
            break
    else:
        start = re.search(r"\{\s*[\"}]", text)
        if start is None:
            raise ParseError("no JSON object found")
        try:
            obj, _ = decoder.raw_decode(text, start.start())
        except json.JSONDecodeError as err:
            raise ParseError(f"malformed JSON: {err}") from None
    if not isinstance(obj, dict):  # pragma: no cover - a '{' always decodes to a dict
        raise ParseError("the JSON value is not an object")
    missing = [k for k in required_keys if k not in obj]
    if missing:
        raise ParseError("JSON object lacks required key(s): " + ", ".join(repr(k) for k in missing))
    return obj


# --------------------------------------------------------------------------------------------
# code


def parse_python_block(text: str, *, require_function: str | None = None) -> str:
    """The source in the first ```python (or ```py) fenced block, checked to parse with ``ast``.

    With ``require_function``, the block must define a top-level function of that name.
    Rejected: no such block, an unterminated one, an empty one, a syntax error (line named).

    >>> parse_python_block("Sure.\\n```python\\ndef potential(state):\\n    return 0.0\\n```\\nDone.")
    'def potential(state):\\n    return 0.0'
    >>> try:
    ...     parse_python_block("```python\\ndef f(:\\n```")
    ... except ParseError as err:
    ...     print(err)
    syntax error in the python block, line 1: invalid syntax
    """
    text = _text(text)
    opening = re.search(r"^[ \t]*```[ \t]*(?:python3?|py)[ \t]*$", text, re.IGNORECASE | re.MULTILINE)
    if opening is None:
        raise ParseError("no ```python fenced block found")
    rest = text[opening.end():]
    closing = re.search(r"^[ \t]*```[ \t]*$", rest, re.MULTILINE)
    if closing is None:
        raise ParseError("the ```python block is not closed with ```")
    source = textwrap.dedent(rest[: closing.start()]).strip("\n").rstrip()
    if not source.strip():
        raise ParseError("the ```python block is empty")
    try:
        tree = ast.parse(source)
    except SyntaxError as err:
        raise ParseError(f"syntax error in the python block, line {err.lineno}: {err.msg}") from None
    except (ValueError, RecursionError, MemoryError) as err:  # null bytes, absurd nesting
        raise ParseError(f"the python block cannot be parsed: {type(err).__name__}") from None
    if require_function is not None:
        names = [n.name for n in tree.body if isinstance(n, ast.FunctionDef)]
        if require_function not in names:
            raise ParseError(f"the python block defines no top-level function {require_function!r}")
    return source


# --------------------------------------------------------------------------------------------
# bullets (ELLM)


def parse_bullets(text: str) -> list[str]:
    """ELLM goals: every non-empty line must be a ``- item`` bullet, else the whole answer is rejected.

    Leading indentation is allowed; the items are returned stripped, in order.

    >>> parse_bullets("- chop tree\\n\\n  - drink water\\n")
    ['chop tree', 'drink water']
    >>> try:
    ...     parse_bullets("Sure! Here are goals:\\n- chop tree")
    ... except ParseError as err:
    ...     print(err)
    line 1 is not a '- ' bullet: 'Sure! Here are goals:'
    """
    text = _text(text)
    items = []
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped:
            continue
        if stripped == "-":
            raise ParseError(f"line {number} is an empty bullet")
        if not stripped.startswith("- "):
            raise ParseError(f"line {number} is not a '- ' bullet: {_excerpt(stripped)!r}")
        item = stripped[2:].strip()
        if not item:
            raise ParseError(f"line {number} is an empty bullet")
        items.append(item)
    return items


# --------------------------------------------------------------------------------------------
# labels (ONI)

_LABEL_RE = re.compile(r"<\s*label\s*>(.*?)<\s*/\s*label\s*>", re.IGNORECASE | re.DOTALL)


def parse_label(text: str, positive: str = "FOO", negative: str = "BAR") -> bool:
    """ONI: ``True`` for ``<label>FOO</label>``, ``False`` for ``<label>BAR</label>``.

    The answer must hold exactly one ``<label>...</label>`` element, and its content, apart from
    whitespace, quotes, ``*``, brackets and a final ``.``, must be exactly one of the two tokens
    (case-insensitive). Unlike ONI's released code, an answer that merely *contains* the positive
    token is not helpful: ``"not FOO"``, ``"FOO/BAR"``, a FOO outside the tag are all rejected.

    >>> parse_label("<label>[BAR]</label>")
    False
    >>> try:
    ...     parse_label("FOO! I think this is helpful.")
    ... except ParseError as err:
    ...     print(err)
    no <label>...</label> element
    """
    text = _text(text)
    if positive.lower() == negative.lower():
        raise ValueError("positive and negative label tokens must differ")
    labels = _LABEL_RE.findall(text)
    if not labels:
        raise ParseError("no <label>...</label> element")
    if len(labels) > 1:
        shown = ", ".join(repr(_excerpt(x.strip(), 20)) for x in labels[:4])
        raise ParseError(f"{len(labels)} <label> elements ({shown}); give exactly one")
    content = labels[0]
    bare = content.strip().strip("\"'`*_()[]{} \t\n").rstrip(".").strip("\"'`*_()[]{} \t\n")
    if bare.lower() == positive.lower():
        return True
    if bare.lower() == negative.lower():
        return False
    raise ParseError(
        f"<label> must hold exactly {positive} or {negative}, got {_excerpt(content.strip())!r}"
    )


# --------------------------------------------------------------------------------------------
# repair loop


@dataclass
class ParseOutcome(Generic[T]):
    """What :func:`parse_with_repair` got for one prompt.

    ``ok``: whether a parse succeeded; ``value``: the parsed value (``None`` when not ok);
    ``attempts``: completions read (1 = the first answer parsed); ``errors``: the reason of each
    failed parse, in order; ``answers``: every raw completion, in order.
    """

    value: T | None
    ok: bool
    attempts: int
    errors: list[str] = field(default_factory=list)
    answers: list[str] = field(default_factory=list)

    @property
    def repaired(self) -> bool:
        """Parsed, but only after at least one repair prompt."""
        return self.ok and self.attempts > 1


@dataclass
class ParseStats:
    """Counts of parse outcomes that callers accumulate and log.

    ``ok``: parsed at the first answer; ``repaired``: parsed after one or more repair prompts;
    ``failed``: never parsed (the caller dropped it); ``repair_calls``: repair prompts sent.

    >>> stats = ParseStats()
    >>> stats.add(ParseOutcome(value=1.0, ok=True, attempts=2, errors=["no number found"]))
    >>> stats.add(ParseOutcome(value=None, ok=False, attempts=3, errors=["a", "b", "c"]))
    >>> stats.as_dict()
    {'ok': 0, 'repaired': 1, 'failed': 1, 'repair_calls': 3, 'total': 2, 'failure_rate': 0.5}
    """

    ok: int = 0
    repaired: int = 0
    failed: int = 0
    repair_calls: int = 0

    def add(self, outcome: ParseOutcome[Any]) -> None:
        """Count one outcome."""
        if not outcome.ok:
            self.failed += 1
        elif outcome.attempts > 1:
            self.repaired += 1
        else:
            self.ok += 1
        self.repair_calls += max(outcome.attempts - 1, 0)

    def update(self, other: ParseStats) -> None:
        """Add another counter's counts into this one."""
        self.ok += other.ok
        self.repaired += other.repaired
        self.failed += other.failed
        self.repair_calls += other.repair_calls

    @property
    def total(self) -> int:
        return self.ok + self.repaired + self.failed

    @property
    def failure_rate(self) -> float:
        return self.failed / self.total if self.total else 0.0

    def as_dict(self) -> dict[str, float]:
        return {
            "ok": self.ok,
            "repaired": self.repaired,
            "failed": self.failed,
            "repair_calls": self.repair_calls,
            "total": self.total,
            "failure_rate": self.failure_rate,
        }


def _quote(answer: str, limit: int) -> str:
    if len(answer) <= limit:
        return answer
    return answer[:limit] + f"\n[... {len(answer) - limit} more characters cut]"


def repair_prompt(
    prompt: Prompt,
    answer: str,
    reason: str,
    *,
    repair_template: Any = "repair",
    answer_format: str | None = None,
    max_quote_chars: int = 2000,
) -> Prompt:
    """The follow-up prompt that quotes a malformed ``answer`` and the parse error ``reason``.

    A chat prompt (list of messages) is continued: the bad answer as an ``assistant`` message, then
    the repair text as a ``user`` message. A text prompt gets the repair text appended after a
    blank line (the text quotes the bad answer). ``repair_template`` is a template name or a
    :class:`~align_gym.llm_rewards.prompts.PromptTemplate` with fields ``answer``, ``error`` and
    ``answer_format``.

    >>> chat = repair_prompt([{"role": "user", "content": "Rate it."}], "great", "no number found",
    ...                      answer_format="Rating: N")
    >>> [m["role"] for m in chat]
    ['user', 'assistant', 'user']
    >>> "no number found" in chat[-1]["content"] and "Rating: N" in chat[-1]["content"]
    True
    """
    from .prompts import PromptTemplate, load_template

    template = repair_template if isinstance(repair_template, PromptTemplate) else load_template(repair_template)
    fields: dict[str, str] = {"answer": _quote(answer, max_quote_chars), "error": reason}
    if answer_format is not None:
        fields["answer_format"] = answer_format
    text = template.render(**fields)
    if isinstance(prompt, str):
        return prompt.rstrip("\n") + "\n\n" + text
    return [*(dict(m) for m in prompt), {"role": "assistant", "content": answer}, {"role": "user", "content": text}]


def _completion(item: object) -> object:
    # Accept one string per prompt, or the client protocol's list of n completions with n == 1.
    if isinstance(item, (list, tuple)) and len(item) == 1:
        return item[0]
    return item


def parse_many_with_repair(
    generate: Callable[[list[Prompt]], Sequence[Any]],
    prompts: Sequence[Prompt],
    parser: Callable[[str], T],
    *,
    max_repairs: int = 2,
    repair_template: Any = "repair",
    answer_format: str | None = None,
    stats: ParseStats | None = None,
) -> list[ParseOutcome[T]]:
    """:func:`parse_with_repair` for many prompts, batching each round of repairs into one call.

    ``generate`` is called at most ``1 + max_repairs`` times, each with the prompts still failing.

    >>> def fake_generate(prompts):  # a FAKE model: only answers well when asked to repair
    ...     return ["Rating: 4" if "could not be read" in p else "four" for p in prompts]
    >>> outs = parse_many_with_repair(fake_generate, ["Rate A.", "Rate B."], lambda t: parse_number(t, 0, 10))
    >>> [(o.value, o.attempts) for o in outs]
    [(4.0, 2), (4.0, 2)]
    """
    if max_repairs < 0:
        raise ValueError(f"max_repairs must be >= 0, got {max_repairs}")
    outcomes: list[ParseOutcome[T]] = [ParseOutcome(value=None, ok=False, attempts=0) for _ in prompts]
    current: list[Prompt] = list(prompts)
    pending = list(range(len(prompts)))
    for round_ in range(max_repairs + 1):
        if not pending:
            break
        answers = list(generate([current[i] for i in pending]))
        if len(answers) != len(pending):
            raise ValueError(f"generate returned {len(answers)} completions for {len(pending)} prompts")
        still = []
        for i, raw in zip(pending, answers):
            out = outcomes[i]
            out.attempts += 1
            answer = _completion(raw)
            out.answers.append(answer if isinstance(answer, str) else repr(answer))
            try:
                out.value = parser(answer)  # type: ignore[arg-type]
                out.ok = True
            except ParseError as err:
                out.errors.append(err.reason)
                if round_ < max_repairs:
                    current[i] = repair_prompt(
                        current[i],
                        answer if isinstance(answer, str) else repr(answer),
                        err.reason,
                        repair_template=repair_template,
                        answer_format=answer_format,
                    )
                    still.append(i)
        pending = still
    if stats is not None:
        for out in outcomes:
            stats.add(out)
    return outcomes


def parse_with_repair(
    generate: Callable[[list[Prompt]], Sequence[Any]],
    prompt: Prompt,
    parser: Callable[[str], T],
    *,
    max_repairs: int = 2,
    repair_template: Any = "repair",
    answer_format: str | None = None,
    stats: ParseStats | None = None,
) -> ParseOutcome[T]:
    """Ask, parse, and on a :class:`ParseError` ask again with a repair prompt, up to ``max_repairs`` times.

    ``generate(prompts) -> list`` is any function returning one completion per prompt (a string,
    or a one-element list of strings as the clients' ``generate`` returns with ``n=1``). Each
    repair prompt quotes the bad answer and the parse error (see :func:`repair_prompt`;
    ``answer_format`` tells the model the required form, e.g. a template's ``answer_format``).
    Parse failures never raise: after the last repair the outcome is ``ok=False, value=None``
    with every error; count it in ``stats``. Errors *raised by* ``generate`` (a network error, a
    replay-cache miss) are not parse failures and propagate.

    >>> def fake_always_bad(prompts):  # a FAKE model that never answers in the format
    ...     return ["I like it."] * len(prompts)
    >>> stats = ParseStats()
    >>> out = parse_with_repair(fake_always_bad, "Rate it.", lambda t: parse_number(t, 0, 10), stats=stats)
    >>> out.ok, out.value, out.attempts, out.errors[0], stats.failed
    (False, None, 3, 'no number found', 1)
    """
    return parse_many_with_repair(
        generate,
        [prompt],
        parser,
        max_repairs=max_repairs,
        repair_template=repair_template,
        answer_format=answer_format,
        stats=stats,
    )[0]
