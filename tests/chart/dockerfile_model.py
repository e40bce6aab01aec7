"""A small Dockerfile reader for tests: instructions per stage, and .dockerignore matching.

No Docker engine runs here, so the Dockerfile is checked by reading it the way the builder
does: parser directives, comments, line continuations, then one instruction per line.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

KNOWN_INSTRUCTIONS = {
    "ADD", "ARG", "CMD", "COPY", "ENTRYPOINT", "ENV", "EXPOSE", "FROM", "HEALTHCHECK",
    "LABEL", "ONBUILD", "RUN", "SHELL", "STOPSIGNAL", "USER", "VOLUME", "WORKDIR",
}  # fmt: skip


class DockerfileError(Exception):
    """The Dockerfile cannot be read as the builder would read it."""


@dataclass(frozen=True)
class Instruction:
    keyword: str
    arguments: str
    line: int

    def exec_form(self) -> list[str]:
        """The JSON array of an exec-form CMD/ENTRYPOINT/HEALTHCHECK CMD/VOLUME."""
        text = self.arguments
        if self.keyword == "HEALTHCHECK":
            text = text.split(" CMD ", 1)[1] if " CMD " in f" {text}" else ""
        value = json.loads(text.strip())
        if not (isinstance(value, list) and all(isinstance(item, str) for item in value)):
            raise DockerfileError(f"line {self.line}: not an exec-form array: {self.arguments}")
        return value

    def flags_and_words(self) -> tuple[dict[str, str], list[str]]:
        """`--flag=value` options and the remaining words (COPY, ADD, HEALTHCHECK)."""
        flags: dict[str, str] = {}
        words = self.arguments.split()
        while words and words[0].startswith("--"):
            name, _, value = words.pop(0)[2:].partition("=")
            flags[name] = value
        return flags, words

    def assignments(self) -> dict[str, str]:
        """KEY=value pairs of ENV, LABEL and ARG (values unquoted)."""
        pairs = re.findall(r'([\w.-]+)(?:=("(?:[^"\\]|\\.)*"|\S*))?', self.arguments)
        return {key: value.strip('"') for key, value in pairs}


@dataclass
class Stage:
    base: str
    name: str
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def last(self, keyword: str) -> Instruction:
        found = self.all(keyword)
        if not found:
            raise DockerfileError(f"stage {self.name!r} has no {keyword}")
        return found[-1]


@dataclass
class Dockerfile:
    global_args: dict[str, str]
    stages: list[Stage]
    directives: dict[str, str]

    @property
    def final(self) -> Stage:
        return self.stages[-1]

    def stage(self, name: str) -> Stage:
        return next(stage for stage in self.stages if stage.name == name)


def read_instructions(text: str) -> tuple[dict[str, str], list[Instruction]]:
    directives: dict[str, str] = {}
    instructions: list[Instruction] = []
    pending: list[str] = []
    start = 0
    in_header = True
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if in_header and (directive := re.fullmatch(r"#\s*(\w+)\s*=\s*(\S+)", line)):
            directives[directive[1].lower()] = directive[2]
            continue
        in_header = False
        if not line or line.startswith("#"):
            continue  # comments may sit inside a continued instruction too
        if not pending:
            start = number
        pending.append(line.removesuffix("\\").strip())
        if line.endswith("\\"):
            continue
        keyword, _, arguments = " ".join(pending).partition(" ")
        instructions.append(Instruction(keyword.upper(), arguments.strip(), start))
        pending = []
    if pending:
        raise DockerfileError(f"line {start}: the last instruction ends with a continuation")
    return directives, instructions


def parse_dockerfile(path: Path) -> Dockerfile:
    directives, instructions = read_instructions(path.read_text())
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for instruction in instructions:
        if instruction.keyword not in KNOWN_INSTRUCTIONS:
            raise DockerfileError(f"line {instruction.line}: unknown {instruction.keyword}")
        if instruction.keyword == "FROM":
            match = re.fullmatch(r"(\S+)(?:\s+AS\s+(\S+))?", instruction.arguments, re.IGNORECASE)
            if not match:
                raise DockerfileError(f"line {instruction.line}: bad FROM")
            stages.append(Stage(base=match[1], name=match[2] or str(len(stages))))
        elif not stages:
            if instruction.keyword != "ARG":
                raise DockerfileError(f"line {instruction.line}: only ARG may precede FROM")
            global_args.update(instruction.assignments())
        else:
            stages[-1].instructions.append(instruction)
    if not stages:
        raise DockerfileError("no FROM")
    return Dockerfile(global_args, stages, directives)


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    out = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out)


def dockerignore_excludes(ignore_text: str, path: str) -> bool:
    """Whether the build context leaves `path` out (Docker's rules: the last match wins, and a
    pattern matching a parent directory matches everything below it)."""
    excluded = False
    parts = path.strip("/").split("/")
    candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    for raw in ignore_text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        regex = _pattern_regex(line.removeprefix("!").strip("/"))
        if any(regex.fullmatch(candidate) for candidate in candidates):
            excluded = not negated
    return excluded
