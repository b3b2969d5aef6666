"""LLM-written code, from answer to checked function: generate, extract, sandbox-check, repair,
and record the reason for every rejection. Reward search (Eureka, Text2Reward) and LaRe's latent
rewards use it.

A :class:`CodeSpec` says what the code must define: a top-level function ``name`` taking
``arguments`` positional arguments (a state dict; or state, action, next state) and returning a
finite number, or a dict of finite numbers with the same keys for every input (named components);
or, with ``vector=True``, a list of finite numbers of the same length for every input (LaRe's
latent factors).
:func:`check_code` loads a source in the sandbox and runs it on recorded inputs (``info["state"]``
dicts), raising :class:`CodeRejected` with the reason: a syntax error, a sandbox violation, an
exception, a timeout, a wrong signature, a NaN or infinite value, a wrong type, components that
change (for these last three, the reason also shows the input that gave it, which the recorded
inputs of a search include from episode ends). :func:`write_code` asks the LLM for ``k`` answers
and puts each through extraction and the check, feeding the reason back for up to ``repairs``
repairs (the ``repair`` template), and keeps every attempt in a :class:`CodeAttempt`.

>>> spec = CodeSpec("potential", 1)
>>> checked = check_code("def potential(state):\\n    return state['x'] / 2", spec, [{"x": 1}, {"x": 4}])
>>> checked.values, checked.components
([0.5, 2.0], [])
>>> try:
...     check_code("def potential(state):\\n    return state['x'] / 0", spec, [{"x": 1}])
... except CodeRejected as error:
...     print(error.reason)  # doctest: +ELLIPSIS
the code failed on the recorded inputs: raised ZeroDivisionError...
"""

from __future__ import annotations

import ast
import json
import math
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .parsing import ParseError, parse_many_with_repair, parse_python_block
from .sandbox import SandboxError, load_function

CALLER = "_call_with_arguments"  # the wrapper that spreads one argument tuple over the function's arguments


class CodeRejected(ParseError):
    """Code that cannot be used, and why (a :class:`ParseError`, so repair prompts quote it)."""


@dataclass(frozen=True)
class CodeSpec:
    """What the code must define: ``name`` taking ``arguments`` positional arguments."""

    name: str
    arguments: int = 1
    timeout: float = 5.0  # seconds for one batch of recorded inputs
    vector: bool = False  # a list of numbers of one fixed length, not a number or a dict


@dataclass
class CheckedCode:
    """A source that passed: its outputs on the recorded inputs (totals, or the vectors of a
    vector spec) and component names."""

    source: str
    values: list[float]
    components: list[str]
    outputs: list[Any] = field(repr=False, default_factory=list)


def _signature_problem(source: str, spec: CodeSpec) -> str | None:
    tree = ast.parse(source)
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == spec.name:
            args = node.args
            positional = len(args.posonlyargs) + len(args.args)
            required = positional - len(args.defaults)
            if args.vararg is None and not (required <= spec.arguments <= positional):
                return (f"{spec.name} takes {positional} argument{'s' * (positional != 1)}, but it is called with "
                        f"{spec.arguments}")
            return None
    return f"no top-level function {spec.name!r}"


def _total(output: Any, index: int, components: list[str] | None) -> tuple[float, list[str]]:
    """The number an output stands for (a dict sums its components), checked finite."""
    if isinstance(output, bool) or not isinstance(output, (int, float, dict)):
        raise CodeRejected(f"input {index} gave a {type(output).__name__}, not a number or a dict of numbers")
    if isinstance(output, dict):
        keys = sorted(map(str, output))
        if not keys:
            raise CodeRejected(f"input {index} gave an empty dict")
        if components is not None and keys != components:
            raise CodeRejected(f"the components changed between inputs: {components} then {keys} at input {index}")
        values = list(output.values())
        if any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in values):
            raise CodeRejected(f"input {index} gave a component that is not a number")
        total = float(sum(values))
    else:
        keys, total = [], float(output)
    if not all(math.isfinite(float(v)) for v in (output.values() if isinstance(output, dict) else [output])):
        raise CodeRejected(f"input {index} gave a value that is not finite ({output!r})")
    return total, keys


def _vector(output: Any, index: int, size: int | None) -> list[float]:
    """A vector output as floats (booleans count as 0 and 1), checked finite and of length ``size``."""
    if not isinstance(output, (list, tuple)):
        raise CodeRejected(f"input {index} gave a {type(output).__name__}, not a list of numbers")
    if not output:
        raise CodeRejected(f"input {index} gave an empty list")
    if any(not isinstance(v, (int, float)) for v in output):
        raise CodeRejected(f"input {index} gave a list with an element that is not a number")
    values = [float(v) for v in output]
    if not all(math.isfinite(v) for v in values):
        raise CodeRejected(f"input {index} gave a value that is not finite ({output!r})")
    if size is not None and len(values) != size:
        raise CodeRejected(f"the output's length changed between inputs: {size} then {len(values)} at input {index}")
    return values


def check_code(source: str, spec: CodeSpec, inputs: Sequence[Any]) -> CheckedCode:
    """Load ``source`` in the sandbox and run it on ``inputs`` (each a state, or a tuple of
    ``spec.arguments`` values); :class:`CodeRejected` with the reason if anything is wrong."""
    try:
        problem = _signature_problem(source, spec)
    except SyntaxError as error:
        raise CodeRejected(f"syntax error, line {error.lineno}: {error.msg}") from None
    if problem:
        raise CodeRejected(problem)
    wrapped = source
    if spec.arguments > 1:
        wrapped += f"\n\n\ndef {CALLER}(values):\n    return {spec.name}(*values)\n"
    try:
        function = load_function(wrapped, CALLER if spec.arguments > 1 else spec.name, timeout=spec.timeout)
    except SandboxError as error:
        raise CodeRejected(f"the sandbox refused the code: {error}") from None
    try:
        outputs = function.batch([list(x) if spec.arguments > 1 else x for x in inputs])
    except SandboxError as error:
        raise CodeRejected(f"the code failed on the recorded inputs: {error.reason}") from None
    finally:
        function.close()
    try:
        if spec.vector:
            vectors: list[Any] = []
            for index, output in enumerate(outputs):
                vectors.append(_vector(output, index, len(vectors[0]) if vectors else None))
            return CheckedCode(source, vectors, [], list(outputs))
        values, components = [], None
        for index, output in enumerate(outputs):
            total, keys = _total(output, index, components)
            components = keys
            values.append(total)
    except CodeRejected as error:  # name the input: the repair prompt and the record then show what broke it
        raise CodeRejected(f"{error.reason}; the input was {_shown(inputs[index])}") from None
    return CheckedCode(source, values, components or [], list(outputs))


def _shown(value: Any, limit: int = 400) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + " ..."


@dataclass
class CodeAttempt:
    """One sample's history: every answer, the reason each was refused, and the outcome."""

    index: int
    answers: list[str]
    errors: list[str]
    source: str | None = None
    checked: CheckedCode | None = None

    @property
    def status(self) -> str:
        return "valid" if self.checked is not None else "rejected"

    @property
    def reason(self) -> str:
        return "" if self.checked is not None else (self.errors[-1] if self.errors else "no answer")


def write_code(client: Any, prompt: Any, spec: CodeSpec, inputs: Sequence[Any], *, samples: int = 4,
               repairs: int = 1, temperature: float = 1.0, max_tokens: int = 600, template_key: str | None = None,
               answer_format: str | None = None) -> list[CodeAttempt]:
    """``samples`` answers to ``prompt``, each extracted, checked on ``inputs`` and repaired up
    to ``repairs`` times; never raises on bad code (LLM errors such as a replay miss do raise)."""
    from .clients import generate_from_template

    def generate(prompts: list[Any]) -> list[Any]:
        if template_key is None:
            return client.generate(prompts, max_tokens=max_tokens, temperature=temperature)
        return generate_from_template(client, prompts, template_key, max_tokens=max_tokens, temperature=temperature)

    def parse(answer: str) -> CheckedCode:
        return check_code(parse_python_block(answer, require_function=spec.name), spec, inputs)

    outcomes = parse_many_with_repair(generate, [prompt] * samples, parse, max_repairs=repairs,
                                      answer_format=answer_format)
    attempts = []
    for index, outcome in enumerate(outcomes):
        result = outcome.value if outcome.ok else None
        attempts.append(CodeAttempt(index, list(outcome.answers), list(outcome.errors),
                                    result.source if result else None, result))
    return attempts


class BatchMemo:
    """The outputs of a batched function for the last ``size`` distinct inputs: each call computes
    only the inputs it has not seen, in one batch, and returns every output it was asked for even
    when the memo overflows during the call.

    >>> calls = []
    >>> memo = BatchMemo(lambda xs: calls.append(len(xs)) or [x * 2 for x in xs], size=2)
    >>> memo([1, 2, 3, 1]), memo([3]), calls
    ([2, 4, 6, 2], [6], [3])
    """

    def __init__(self, compute: Callable[[list[Any]], Sequence[Any]], size: int = 100_000):
        self.compute, self.size = compute, int(size)
        self._memo: OrderedDict[str, Any] = OrderedDict()

    def __call__(self, items: Sequence[Any]) -> list[Any]:
        keys = [json.dumps(item, sort_keys=True, default=str) for item in items]
        found = {key: self._memo[key] for key in keys if key in self._memo}
        for key in found:
            self._memo.move_to_end(key)
        missing = {key: item for key, item in zip(keys, items) if key not in found}
        if missing:
            for key, value in zip(missing, self.compute(list(missing.values()))):
                found[key] = self._memo[key] = value
            while len(self._memo) > self.size:
                self._memo.popitem(last=False)
        return [found[key] for key in keys]
