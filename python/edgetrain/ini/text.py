"""The text layer of INI model files: sections of ``key = value`` entries with their line
numbers, parsed the way NNTrainer's iniparser reads them.

Keys and section names are case-insensitive (iniparser lower-cases them); ``#`` and ``;``
start comments, also after a value; a value in quotes keeps its ``#`` and ``;``; a line
ending in ``\\`` continues on the next. Unlike iniparser, which silently merges them, a
repeated section or key is an error, as is any line that is not a section, a key or a
comment. Every error is a :class:`ModelFileError` with the file and line.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ModelFileError

PathLike = str | os.PathLike[str]


@dataclass(frozen=True)
class IniEntry:
    """One ``key = value`` line; ``key`` lower-cased, ``value`` unquoted and stripped."""

    key: str
    value: str
    line: int


@dataclass
class IniSection:
    """One ``[name]`` and its entries by lower-cased key, in file order."""

    name: str
    line: int
    entries: dict[str, IniEntry] = field(default_factory=dict)
    #: the file the section is in (a backbone's sections are in another file)
    path: Path | None = None

    @property
    def key(self) -> str:
        return self.name.lower()

    def get(self, key: str) -> str | None:
        entry = self.entries.get(key)
        return entry.value if entry is not None else None


_SECTION = re.compile(r"^\[([^\]]*)\]\s*(?:[#;].*)?$")


def _value(raw: str) -> str | None:
    """The value after ``=``: quoted text as is, else up to a ``#``/``;`` comment.
    ``None`` when text follows a closing quote."""
    raw = raw.strip()
    if raw[:1] in ("'", '"'):
        close = raw.find(raw[0], 1)
        if close > 0:
            rest = raw[close + 1 :].strip()
            if rest and rest[0] not in "#;":
                return None
            return raw[1:close]
    return re.split(r"[#;]", raw, maxsplit=1)[0].strip()


def parse_ini(text: str, path: PathLike) -> list[IniSection]:
    """Sections of an INI text, with line numbers; syntax errors and duplicates raise."""
    path = Path(path)
    sections: list[IniSection] = []
    by_key: dict[str, IniSection] = {}
    current: IniSection | None = None
    lines = text.splitlines()
    number = 0
    while number < len(lines):
        start = number + 1
        line = lines[number].strip()
        number += 1
        while line.endswith("\\") and number < len(lines):
            line = line[:-1].rstrip() + lines[number].strip()
            number += 1
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            match = _SECTION.match(line)
            if not match:
                raise ModelFileError(f"malformed section header {line!r}", path=path, line=start)
            name = match.group(1).strip()  # may be empty: NNTrainer's backbone files use "[]"
            if name.lower() in by_key:
                first = by_key[name.lower()]
                raise ModelFileError(
                    f"section [{name}] appears twice (first at line {first.line})",
                    path=path,
                    line=start,
                    section=name,
                )
            current = IniSection(name, start, path=path)
            sections.append(current)
            by_key[name.lower()] = current
            continue
        key, equals, raw = line.partition("=")
        key = key.strip().lower()
        if not equals or not key:
            raise ModelFileError(f"expected 'key = value', got {line!r}", path=path, line=start)
        if current is None:
            raise ModelFileError(
                f"key '{key}' comes before any [section]", path=path, line=start, key=key
            )
        value = _value(raw)
        if value is None:
            raise ModelFileError(
                f"unexpected text after the quoted value in {line!r}",
                path=path, line=start, section=current.name, key=key,
            )  # fmt: skip
        if not value:
            raise ModelFileError(
                "the value is empty", path=path, line=start, section=current.name, key=key
            )
        if key in current.entries:
            raise ModelFileError(
                f"key '{key}' appears twice in the section (first at line "
                f"{current.entries[key].line})",
                path=path, line=start, section=current.name, key=key,
            )  # fmt: skip
        current.entries[key] = IniEntry(key, value, start)
    return sections


def read_sections(path: PathLike) -> list[IniSection]:
    """Read and parse a file; a missing or unreadable file is a :class:`ModelFileError`."""
    path = Path(path)
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        raise ModelFileError(f"not a text file ({err.reason})", path=path) from None
    except OSError as err:
        raise ModelFileError(
            f"cannot read the model file: {err.strerror or err}", path=path
        ) from None
    return parse_ini(text, path)
