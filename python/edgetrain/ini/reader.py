"""Interpreting parsed sections: the helpers every section reader shares, so that every
error names the file, line, section and key."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from ..errors import ConfigError, ModelFileError
from .text import IniSection


class Reader:
    """Interprets the sections of one file; every error goes through :meth:`fail`."""

    def __init__(self, path: Path, sections: list[IniSection]) -> None:
        self.path = path
        self.sections = sections
        self.by_key = {s.key: s for s in sections}

    def fail(
        self, message: str, section: IniSection | None = None, key: str | None = None
    ) -> NoReturn:
        line = None
        if section is not None:
            entry = section.entries.get(key) if key else None
            line = entry.line if entry is not None else section.line
        raise ModelFileError(
            message,
            path=section.path if section is not None and section.path is not None else self.path,
            line=line,
            section=section.name if section is not None else None,
            key=key if section is not None and key in section.entries else None,
        )

    def convert(self, section: IniSection, key: str, parse: Callable[[str, str], Any]) -> Any:
        """``parse(value, key)`` with its :class:`ConfigError` pointed at the line."""
        try:
            return parse(section.entries[key].value, key)
        except ConfigError as err:
            self.fail(str(err), section, key)

    def blame(self, err: ConfigError, section: IniSection) -> str | None:
        """The key of ``section`` a :class:`ConfigError` is about: its ``key``, else the
        key its message starts with (``"beta1 must be ..."``)."""
        if err.key is not None:
            return err.key
        return next((k for k in section.entries if str(err).startswith(f"{k} ")), None)

    def check_keys(self, section: IniSection, allowed: Sequence[str], what: str) -> None:
        for key in section.entries:
            if key not in allowed:
                known = ", ".join(sorted(allowed))
                self.fail(f"unknown key '{key}' for {what} (known: {known})", section, key)

    def resolve(self, text: str, section: IniSection | None = None) -> Path:
        """A path as NNTrainer resolves it: relative to the directory of the model file
        (of the file ``section`` is in, for a backbone); made absolute, so that it means
        the same when written into a file elsewhere."""
        path = Path(text)
        base = section.path if section is not None and section.path is not None else self.path
        return path if path.is_absolute() else (base.parent / path).absolute()
