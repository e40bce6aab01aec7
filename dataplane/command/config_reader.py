"""Typed reads from a parsed TOML table, collecting every problem with its location.

A `Table` wraps one TOML table (or inline table) and knows where it is (`file`, `[clusters.app
.frontends.0]`). Each getter checks the value's type and range and, on a problem, records a
`ConfigProblem` and returns the default, so one pass over the file reports every error, not just
the first. `Table.finish` then reports the keys nobody asked for: an error in the tables sozu
declares `deny_unknown_fields`, a warning elsewhere.
"""

from __future__ import annotations

import enum
import os
from dataclasses import dataclass, field
from typing import Any, TypeVar, overload

from dataplane.command.address import SocketAddress

E = TypeVar("E", bound=enum.Enum)

MAX_INCLUDED_FILE_SIZE = 16 * 1024 * 1024  # certificates, keys, answer templates


@dataclass(frozen=True)
class ConfigProblem:
    file: str
    table: str
    key: str | None
    message: str

    def __str__(self) -> str:
        where = f"{self.file}: [{self.table}]" if self.table else f"{self.file}:"
        return f"{where} {self.key}: {self.message}" if self.key else f"{where} {self.message}"


class ConfigError(Exception):
    """A configuration that cannot be used; `problems` lists all of them."""

    def __init__(self, problems: list[ConfigProblem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(problem) for problem in problems))


@dataclass
class Report:
    """Problems and warnings of one load, shared by every Table of it."""

    file: str
    base_dir: str
    problems: list[ConfigProblem] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def error(self, table: str, key: str | None, message: str) -> None:
        self.problems.append(ConfigProblem(self.file, table, key, message))

    def warn(self, table: str, key: str | None, message: str) -> None:
        self.warnings.append(str(ConfigProblem(self.file, table, key, message)))

    def read_file(self, table: str, key: str, path: str) -> str | None:
        """A file named by the config, relative to the config file's directory."""
        full = os.path.join(self.base_dir, os.path.expanduser(path))
        try:
            with open(full, encoding="utf-8", newline="") as file:
                text = file.read(MAX_INCLUDED_FILE_SIZE + 1)
        except (OSError, UnicodeDecodeError) as error:
            reason = error.strerror if isinstance(error, OSError) else "not UTF-8 text"
            self.error(table, key, f"cannot read {full}: {reason}")
            return None
        if len(text) > MAX_INCLUDED_FILE_SIZE:
            self.error(table, key, f"{full} is larger than {MAX_INCLUDED_FILE_SIZE} bytes")
            return None
        return text


_MISSING: Any = object()


class Table:
    def __init__(self, report: Report, name: str, data: dict[str, Any]) -> None:
        self.report = report
        self.name = name
        self.data = data
        self.used: set[str] = set()

    def has(self, key: str) -> bool:
        return key in self.data

    def error(self, key: str | None, message: str) -> None:
        self.report.error(self.name, key, message)

    def warn(self, key: str | None, message: str) -> None:
        self.report.warn(self.name, key, message)

    def _raw(self, key: str, required: bool) -> Any:
        self.used.add(key)
        value = self.data.get(key, _MISSING)
        if value is _MISSING and required:
            self.error(key, "missing required key")
        return value

    def _typed(self, key: str, kinds: tuple[type, ...], label: str, required: bool) -> Any:
        value = self._raw(key, required)
        if value is _MISSING:
            return _MISSING
        if isinstance(value, bool) and bool not in kinds:
            self.error(key, f"expected {label}, got a boolean")
            return _MISSING
        if not isinstance(value, kinds):
            self.error(key, f"expected {label}, got {_describe(value)}")
            return _MISSING
        return value

    def text(self, key: str, default: Any = None, required: bool = False) -> Any:
        value = self._typed(key, (str,), "a string", required)
        return default if value is _MISSING else value

    def flag(self, key: str, default: Any = None) -> Any:
        value = self._typed(key, (bool,), "true or false", False)
        return default if value is _MISSING else value

    def integer(self, key: str, default: Any = None, low: int = 0, high: int = 2**64 - 1) -> Any:
        value = self._typed(key, (int,), "an integer", False)
        if value is _MISSING:
            return default
        if not low <= value <= high:
            self.error(key, f"{value} is out of range {low}..{high}")
            return default
        return value

    def number(self, key: str, default: Any = None) -> Any:
        """An integer or a float (finite)."""
        value = self._typed(key, (int, float), "a number", False)
        if value is _MISSING:
            return default
        if value != value or value in (float("inf"), float("-inf")):
            self.error(key, f"{value} is not a finite number")
            return default
        return value

    def str_list(self, key: str, default: Any = None) -> Any:
        value = self._typed(key, (list,), "an array of strings", False)
        if value is _MISSING:
            return default
        if not all(isinstance(item, str) for item in value):
            self.error(key, "expected an array of strings")
            return default
        return list(value)

    def str_map(self, key: str) -> dict[str, str] | None:
        value = self._typed(key, (dict,), "a table of strings", False)
        if value is _MISSING:
            return None
        if not all(isinstance(item, str) for item in value.values()):
            self.error(key, "expected a table whose values are all strings")
            return None
        return dict(value)

    def address(self, key: str, required: bool = False) -> SocketAddress | None:
        text = self._typed(key, (str,), 'an address like "127.0.0.1:8080"', required)
        if text is _MISSING:
            return None
        try:
            return SocketAddress.parse(text)
        except ValueError as error:
            self.error(key, str(error))
            return None

    @overload
    def choice(self, key: str, enum_type: type[E], default: E) -> E: ...
    @overload
    def choice(self, key: str, enum_type: type[E], default: None = None) -> E | None: ...
    def choice(self, key: str, enum_type: type[E], default: E | None = None) -> E | None:
        """An enum by name, case-insensitive (sozu's TOML writes SCREAMING_SNAKE_CASE)."""
        text = self._typed(key, (str,), "a string", False)
        if text is _MISSING:
            return default
        names = {member.name: member for member in enum_type}
        found = names.get(text.strip().upper().replace("-", "_"))
        if found is None:
            allowed = ", ".join(sorted(names))
            self.error(key, f"unknown value {text!r}: expected one of {allowed}")
            return default
        return found

    def table(self, key: str, required: bool = False) -> Table | None:
        value = self._typed(key, (dict,), "a table", required)
        if value is _MISSING:
            return None
        return Table(self.report, f"{self.name}.{key}" if self.name else key, value)

    def tables(self, key: str, required: bool = False) -> list[Table]:
        value = self._typed(key, (list,), "an array of tables", required)
        if value is _MISSING:
            return []
        prefix = f"{self.name}.{key}" if self.name else key
        found = []
        for index, item in enumerate(value):
            if isinstance(item, dict):
                found.append(Table(self.report, f"{prefix}.{index}", item))
            else:
                self.report.error(
                    f"{prefix}.{index}", None, f"expected a table, got {_describe(item)}"
                )
        return found

    def finish(self, strict: bool, ignored: dict[str, str] | None = None) -> None:
        """Report keys that nobody read: errors when strict, else warnings.

        `ignored` names keys accepted but not acted on, with the reason: one warning each.
        """
        for key in self.data:
            if key in self.used:
                continue
            if ignored and key in ignored:
                self.warn(key, f"accepted but ignored: {ignored[key]}")
            elif strict:
                import difflib  # a typo's suggestion only: not in every worker

                near = difflib.get_close_matches(key, sorted(self.used), n=1, cutoff=0.8)
                self.error(key, f"unknown key (did you mean {near[0]}?)" if near else "unknown key")
            else:
                self.warn(key, "unknown key, ignored")


def _describe(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return f"the integer {value}"
    if isinstance(value, float):
        return f"the number {value}"
    if isinstance(value, str):
        return f"the string {value!r}"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    return type(value).__name__
