"""The page engine the web envs share: pages of text and interactive elements, shown as text or
as simplified HTML, and the actions that work them.

An action is one of ``search[query]``, ``click[label]``, ``type[field=text]`` or
``select[option]`` (WebShop's ``search[...]``/``click[...]``, with MiniWoB's typing and lists).
Labels match without regard to case. :func:`parse_action` returns ``(verb, argument)`` or raises
:class:`ActionError` with a message the env shows as ``info["invalid_action"]``.

>>> page = Page("Shop", [Text("Find a mug."), Element("search", "search"), Element("button", "Back to Search")])
>>> print(page.text())
Shop
Find a mug.
[search box]
[Back to Search]
>>> parse_action("click[back to search]")
('click', 'back to search')
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field

VERBS = ("search", "click", "type", "select")
_ACTION = re.compile(r"^\s*(search|click|type|select)\s*\[(.*)\]\s*$", re.IGNORECASE | re.DOTALL)


class ActionError(ValueError):
    """An action the page cannot take (the message says why)."""


def parse_action(action: str) -> tuple[str, str]:
    """``(verb, argument)`` of ``verb[argument]``; :class:`ActionError` if malformed."""
    match = _ACTION.match(action)
    if not match:
        raise ActionError("Not an action: write search[query], click[label], type[field=text] or select[option].")
    return match.group(1).lower(), match.group(2).strip()


@dataclass(frozen=True)
class Text:
    """A line of text."""

    text: str


@dataclass(frozen=True)
class Element:
    """An interactive element: ``kind`` is ``button`` or ``link`` (clicked), ``search`` (a search
    box), ``input`` (typed into, ``value`` its content), ``option`` (of a list, ``selected``) or
    ``choice`` (a clickable option value, ``selected``)."""

    kind: str
    label: str
    value: str = ""
    selected: bool = False


@dataclass(frozen=True)
class Page:
    """A page: its title and its parts, in reading order."""

    title: str
    parts: list[Text | Element] = field(default_factory=list)

    def clickables(self) -> list[str]:
        return [p.label for p in self.parts if isinstance(p, Element) and p.kind in ("button", "link", "choice")]

    def find(self, kind: tuple[str, ...], label: str) -> Element | None:
        wanted = label.strip().lower()
        for part in self.parts:
            if isinstance(part, Element) and part.kind in kind and part.label.lower() == wanted:
                return part
        return None

    def text(self) -> str:
        """The page as plain text: clickables in brackets, a chosen option marked with ``*``."""
        lines = [self.title]
        for part in self.parts:
            if isinstance(part, Text):
                lines.append(part.text)
            elif part.kind == "search":
                lines.append("[search box]")
            elif part.kind == "input":
                lines.append(f"{part.label}: [{part.value}]")
            elif part.kind == "option":
                lines.append(f"({'*' if part.selected else ' '}) {part.label}")
            else:
                lines.append(f"[{part.label}]" + ("*" if part.selected else ""))
        return "\n".join(lines)

    def html(self) -> str:
        """The page as simplified HTML (what an LLM web agent reads; ``serve-web`` builds its own,
        working page from the same parts)."""
        out = [f"<h1>{html.escape(self.title)}</h1>"]
        for part in self.parts:
            if isinstance(part, Text):
                out.append(f"<p>{html.escape(part.text)}</p>")
                continue
            label = html.escape(part.label)
            mark = ' class="selected"' if part.selected else ""
            if part.kind == "search":
                out.append('<form><input type="text" name="q" id="search">'
                           '<button type="submit" id="search-button">Search</button></form>')
            elif part.kind == "input":
                out.append(f'<form><label>{label} <input type="text" name="text" '
                           f'value="{html.escape(part.value)}"></label><button type="submit">Enter</button></form>')
            elif part.kind == "option":
                out.append(f'<a href="#"{mark}>({"*" if part.selected else " "}) {label}</a>')
            elif part.kind == "link":
                out.append(f'<a href="#"{mark}>{label}</a>')
            else:
                out.append(f'<button{mark}>{label}</button>')
        return "\n".join(out)
