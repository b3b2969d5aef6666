"""Prompt templates as versioned files: ``llm_rewards/prompts/<name>.toml``.

A template file is TOML with these keys::

    name = "rate_number"          # must equal the file's stem
    version = 1                   # int >= 1; bump it whenever the text changes
    description = "..."           # what it asks, which fields it takes
    source = "..."                # optional: the paper / code it follows
    answer_format = "Rating: N"   # optional: the required answer form, quoted by repair prompts
    system = "..."                # optional system message
    template = "..."              # the user message
    [defaults]                    # optional default values for fields
    helpful = "..."

Text uses :class:`string.Template` placeholders, ``$field`` or ``${field}`` (``$$`` is a literal
``$``), chosen over ``str.format`` so that JSON, Python code and ``{}`` in prompts need no
escaping. :meth:`PromptTemplate.render` raises :class:`TemplateError` naming any missing or
unknown field.

``PromptTemplate.key`` is ``"<name>@v<version>+<hash>"``: the name, the version and a short hash of
the system and template text. It goes into the LLM cache key (through :attr:`cache_fields`), so
bumping the version invalidates cached answers, and an edit of the text without a version bump
still changes the key (the hash) rather than silently reusing stale answers.

Templates are looked up in the directories of ``$ALIGN_GYM_PROMPTS`` (an ``os.pathsep``-separated
list, searched first, so a user's file overrides a shipped one of the same name), then in the
package folder.

>>> t = load_template("rate_number")
>>> t.name, t.version, t.fields
('rate_number', 1, ('caption', 'task'))
>>> "Rating:" in t.render(task="Open the door.", caption="You open the door.")
True
>>> [m["role"] for m in t.render_chat(task="Open the door.", caption="You open the door.")]
['system', 'user']
>>> t.key.startswith("rate_number@v1+")
True
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import string
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "PROMPTS_ENV",
    "PromptTemplate",
    "TemplateError",
    "list_templates",
    "load_template",
    "template_dirs",
]

#: Environment variable: extra template directories (``os.pathsep``-separated), searched first.
PROMPTS_ENV = "ALIGN_GYM_PROMPTS"
PACKAGE_DIR = Path(__file__).with_name("prompts")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_KEYS = {"name", "version", "description", "source", "answer_format", "system", "template", "defaults"}
_REQUIRED = ("name", "version", "description", "template")


class TemplateError(ValueError):
    """A template file that is malformed, or a render with missing or unknown fields."""


def _placeholders(text: str, where: str) -> set[str]:
    names: set[str] = set()
    for m in string.Template.pattern.finditer(text):
        if m.group("invalid") is not None:
            line = text[: m.start("invalid")].count("\n") + 1
            raise TemplateError(f"{where}: invalid '$' placeholder on line {line} (write $$ for a literal $)")
        name = m.group("named") or m.group("braced")
        if name:
            names.add(name)
    return names


@dataclass(frozen=True)
class PromptTemplate:
    """A named, versioned prompt; see the module docstring for the file format.

    >>> t = PromptTemplate(name="hello", version=2, description="demo", template="Hi $who.")
    >>> t.render(who="you")
    'Hi you.'
    >>> try:
    ...     t.render()
    ... except TemplateError as err:
    ...     print(err)
    template 'hello@v2' needs field(s) 'who'
    >>> t.cache_fields["template"], t.cache_fields["template_version"].startswith("2+")
    ('hello', True)
    """

    name: str
    version: int
    description: str
    template: str
    system: str | None = None
    answer_format: str | None = None
    source: str | None = None
    defaults: Mapping[str, str] = field(default_factory=dict, hash=False)
    path: Path | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        where = f"template {self.name!r}" + (f" ({self.path})" if self.path else "")
        if not isinstance(self.name, str) or not _NAME_RE.match(self.name):
            raise TemplateError(f"{where}: name must match {_NAME_RE.pattern}")
        if isinstance(self.version, bool) or not isinstance(self.version, int) or self.version < 1:
            raise TemplateError(f"{where}: version must be an int >= 1, got {self.version!r}")
        for attr in ("description", "template"):
            if not isinstance(getattr(self, attr), str) or not getattr(self, attr).strip():
                raise TemplateError(f"{where}: {attr!r} must be a non-empty string")
        for attr in ("system", "answer_format", "source"):
            value = getattr(self, attr)
            if value is not None and not isinstance(value, str):
                raise TemplateError(f"{where}: {attr!r} must be a string")
        if not isinstance(self.defaults, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in self.defaults.items()
        ):
            raise TemplateError(f"{where}: 'defaults' must map field names to strings")
        names = _placeholders(self.template, where) | _placeholders(self.system or "", where)
        unused = sorted(set(self.defaults) - names)
        if unused:
            raise TemplateError(f"{where}: defaults for fields the text does not use: {unused}")
        object.__setattr__(self, "defaults", dict(self.defaults))
        object.__setattr__(self, "_fields", tuple(sorted(names)))

    @property
    def fields(self) -> tuple[str, ...]:
        """Every field name the system and template text use, sorted."""
        return self._fields  # type: ignore[attr-defined]

    @property
    def required_fields(self) -> tuple[str, ...]:
        """The fields without a default."""
        return tuple(f for f in self.fields if f not in self.defaults)

    @property
    def text_hash(self) -> str:
        """First 8 hex digits of the sha256 of the system and template text."""
        blob = json.dumps([self.system, self.template], ensure_ascii=False)
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:8]

    @property
    def key(self) -> str:
        """``"<name>@v<version>+<text_hash>"``: changes with the version and with any text edit."""
        return f"{self.name}@v{self.version}+{self.text_hash}"

    @property
    def cache_fields(self) -> dict[str, str]:
        """``template`` and ``template_version`` arguments for :func:`~align_gym.llm_rewards.cache.cache_key`."""
        return {"template": self.name, "template_version": f"{self.version}+{self.text_hash}"}

    def _values(self, fields: Mapping[str, Any]) -> dict[str, str]:
        missing = [f for f in self.required_fields if f not in fields]
        if missing:
            raise TemplateError(
                f"template '{self.name}@v{self.version}' needs field(s) " + ", ".join(repr(f) for f in missing)
            )
        unknown = sorted(set(fields) - set(self.fields))
        if unknown:
            raise TemplateError(
                f"template '{self.name}@v{self.version}' has no field(s) "
                + ", ".join(repr(f) for f in unknown)
                + f" (its fields: {', '.join(self.fields) or 'none'})"
            )
        values = dict(self.defaults)
        for name, value in fields.items():
            if isinstance(value, bool) or not isinstance(value, (str, int, float)):
                raise TemplateError(
                    f"template '{self.name}@v{self.version}': field {name!r} must be str, int or float, "
                    f"got {type(value).__name__}"
                )
            values[name] = str(value)
        return values

    def render_user(self, **fields: Any) -> str:
        """The user message alone."""
        return string.Template(self.template).substitute(self._values(fields))

    def render_system(self, **fields: Any) -> str | None:
        """The system message, or ``None`` when the template has none."""
        if self.system is None:
            return None
        return string.Template(self.system).substitute(self._values(fields))

    def render(self, **fields: Any) -> str:
        """One text prompt: the system message, a blank line, then the user message.

        For chat models prefer :meth:`render_chat`, which keeps the two apart.
        """
        user = self.render_user(**fields)
        system = self.render_system(**fields)
        return user if system is None else f"{system.rstrip()}\n\n{user}"

    def render_chat(self, **fields: Any) -> list[dict[str, str]]:
        """Chat messages: ``[{"role": "system", ...}, {"role": "user", ...}]`` (no system if none)."""
        user = self.render_user(**fields)
        system = self.render_system(**fields)
        messages = [] if system is None else [{"role": "system", "content": system}]
        messages.append({"role": "user", "content": user})
        return messages

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> PromptTemplate:
        """Read and check one template file."""
        path = Path(path)
        try:
            with path.open("rb") as fh:
                data = tomllib.load(fh)
        except tomllib.TOMLDecodeError as err:
            raise TemplateError(f"{path}: not valid TOML: {err}") from None
        unknown = sorted(set(data) - _KEYS)
        if unknown:
            raise TemplateError(f"{path}: unknown key(s) {unknown}; allowed: {sorted(_KEYS)}")
        missing = [k for k in _REQUIRED if k not in data]
        if missing:
            raise TemplateError(f"{path}: missing key(s) {missing}")
        if data["name"] != path.stem:
            raise TemplateError(f"{path}: name {data['name']!r} differs from the file name {path.stem!r}")
        return cls(
            name=data["name"],
            version=data["version"],
            description=data["description"],
            template=data["template"],
            system=data.get("system"),
            answer_format=data.get("answer_format"),
            source=data.get("source"),
            defaults=data.get("defaults", {}),
            path=path,
        )


def template_dirs(extra: Iterable[str | os.PathLike[str]] = ()) -> list[Path]:
    """Directories searched, in order: ``extra``, ``$ALIGN_GYM_PROMPTS``, the package folder."""
    dirs = [Path(d) for d in extra]
    dirs += [Path(d) for d in os.environ.get(PROMPTS_ENV, "").split(os.pathsep) if d.strip()]
    dirs.append(PACKAGE_DIR)
    return dirs


def load_template(name: str, *, dirs: Iterable[str | os.PathLike[str]] = ()) -> PromptTemplate:
    """The template called ``name`` from the first directory of :func:`template_dirs` that has it.

    ``name`` may also be a path to a ``.toml`` file.

    >>> load_template("motif_pair").answer_format
    '("best_description": 1), ("best_description": 2) or ("best_description": None)'
    >>> try:
    ...     load_template("no_such_prompt")
    ... except FileNotFoundError as err:
    ...     print(str(err).split(" in ")[0])
    no prompt template 'no_such_prompt'
    """
    if name.endswith(".toml") and Path(name).is_file():
        return PromptTemplate.from_file(name)
    if not _NAME_RE.match(name):
        raise TemplateError(f"bad template name {name!r}: must match {_NAME_RE.pattern}")
    searched = template_dirs(dirs)
    for d in searched:
        path = d / f"{name}.toml"
        if path.is_file():
            return PromptTemplate.from_file(path)
    raise FileNotFoundError(
        f"no prompt template {name!r} in {', '.join(str(d) for d in searched)}; "
        f"available: {', '.join(list_templates(dirs=dirs))}"
    )


def list_templates(*, dirs: Iterable[str | os.PathLike[str]] = ()) -> list[str]:
    """Sorted names of every template found in :func:`template_dirs`.

    >>> {"motif_pair", "oni_label", "ellm_goals", "rate_number", "reward_code", "repair"} <= set(list_templates())
    True
    """
    names = set()
    for d in template_dirs(dirs):
        if d.is_dir():
            names.update(p.stem for p in d.glob("*.toml") if _NAME_RE.match(p.stem))
    return sorted(names)
