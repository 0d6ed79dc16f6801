"""The TOML key locator against documents whose every line is known.

Random nested documents are written in every style TOML allows for a table
([header], dotted keys, inline tables) and for arrays ([[array of tables]],
multi-line arrays), while the writer records the line of each key; the
locator must find exactly those lines.
"""

from __future__ import annotations

import json
import re
import tomllib
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.config import Location, TomlLines

Scalar = int | bool | str
STYLES = ("header", "dotted", "inline")

keys = st.text(alphabet="abz_-. é", min_size=1, max_size=4)
scalars = st.one_of(
    st.integers(-(2**40), 2**40),
    st.booleans(),
    st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=6),
    st.text(alphabet="ab\n\"'#[]{}=,", max_size=8),
)
documents = st.recursive(
    st.dictionaries(keys, scalars, min_size=1, max_size=3),
    lambda children: st.dictionaries(
        keys,
        st.one_of(
            scalars,
            children,
            st.lists(scalars, min_size=1, max_size=3),
            st.lists(children, min_size=1, max_size=3),
        ),
        min_size=1,
        max_size=4,
    ),
    max_leaves=14,
)


def toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key, ensure_ascii=False)


class Writer:
    """Writes a document as TOML and notes the line each key path starts on."""

    def __init__(self, draw: Any) -> None:
        self.draw = draw
        self.lines: list[str] = []
        self.expected: dict[Location, int] = {}

    @property
    def next_line(self) -> int:
        return sum(line.count("\n") + 1 for line in self.lines) + 1

    def note(self, path: Location, line: int) -> None:
        self.expected.setdefault(path, line)

    def emit(self, text: str) -> None:
        self.lines.append(text)

    def scalar(self, value: Scalar) -> str:
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, int):
            return str(value)
        if "\n" in value and self.draw(st.booleans()):
            body = value.replace("\\", "\\\\").replace('"', '\\"')
            return f'"""\n{body}"""'
        return json.dumps(value, ensure_ascii=False)

    def inline(self, path: Location, value: Any, line: int) -> str:
        """A value written from ``line`` on; notes nested keys where they land."""
        if not isinstance(value, dict | list):
            return self.scalar(value)
        opening, closing = ("{ ", " }") if isinstance(value, dict) else ("[", "]")
        out = opening
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for number, (key, child) in enumerate(items):
            out += ", " if number else ""
            here = line + out.count("\n")
            self.note((*path, key), here)
            prefix = f"{toml_key(key)} = " if isinstance(value, dict) else ""
            out += prefix + self.inline((*path, key), child, here)
        return out + closing

    def key_value(self, path: Location, dotted: str, value: Any) -> None:
        line = self.next_line
        self.note(path, line)
        if isinstance(value, list) and self.draw(st.booleans()):
            self.emit(f"{dotted} = [  # one element per line")
            for index, child in enumerate(value):
                element_line = self.next_line
                self.note((*path, index), element_line)
                self.emit(f"  {self.inline((*path, index), child, element_line)},")
            self.emit("]")
        else:
            self.emit(f"{dotted} = {self.inline(path, value, line)}")

    def dotted(self, path: Location, prefix: str, table: dict[str, Any]) -> None:
        for key, value in table.items():
            name = f"{prefix}.{toml_key(key)}"
            if isinstance(value, dict):
                self.note((*path, key), self.next_line)
                self.dotted((*path, key), name, value)
            else:
                self.key_value((*path, key), name, value)

    def table(self, path: Location, header: str, table: dict[str, Any]) -> None:
        later: list[tuple[str, Any, str]] = []
        for key, value in table.items():
            style = self.draw(st.sampled_from(STYLES))
            is_table_array = isinstance(value, list) and all(isinstance(v, dict) for v in value)
            if isinstance(value, dict) and style == "dotted":
                self.note((*path, key), self.next_line)
                self.dotted((*path, key), toml_key(key), value)
            elif (isinstance(value, dict) or is_table_array) and style == "header":
                later.append((key, value, style))
            else:
                self.key_value((*path, key), toml_key(key), value)
        for key, value, _ in later:
            name = f"{header}.{toml_key(key)}" if header else toml_key(key)
            self.emit("# a comment [not.a.header]")
            if isinstance(value, dict):
                self.note((*path, key), self.next_line)
                self.emit(f"[{name}]")
                self.table((*path, key), name, value)
                continue
            for index, element in enumerate(value):
                line = self.next_line
                self.note((*path, key), line)
                self.note((*path, key, index), line)
                self.emit(f"[[ {name} ]]")
                self.table((*path, key, index), name, element)


@settings(max_examples=300, deadline=None)
@given(document=documents, data=st.data())
def test_locator_finds_the_line_of_every_key(document: dict[str, Any], data: st.DataObject) -> None:
    writer = Writer(data.draw)
    writer.table((), "", document)
    text = "\n".join(writer.lines) + "\n"
    assert tomllib.loads(text) == document, text
    assert TomlLines(text).lines == writer.expected, text


def test_missing_key_falls_back_to_its_table() -> None:
    text = '[a]\nx = 1\n\n[[b]]\ny = 2\n[[b]]\n[b.c]\nz = "}"\n'
    locator = TomlLines(text)
    assert locator.line_of(("a", "missing")) == 1
    assert locator.line_of(("b", 1, "c", "missing")) == 7
    assert locator.line_of(("b", 1)) == 6
    assert locator.line_of(("b", 0, "y")) == 5
    assert locator.line_of(("nowhere",)) is None
