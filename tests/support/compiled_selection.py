"""Which unit test files exercise the modules that mypyc compiles (pyproject.toml's
[tool.pysozu] compile): those that import one of them, directly or through other modules,
found by reading the sources (ast), so a new compiled module's tests are picked up with no
list to keep. tests/integration/test_compiled_build.py runs these again against the compiled
build; the others import nothing compiled, and would run the same Python code twice.

What counts as an import, to over-select rather than miss one: every `import` and
`from ... import` anywhere in a file (in functions, under `if TYPE_CHECKING:` too), a name
imported from a package that is its submodule, a package's `__init__.py` and those of its
parents, and any `dataplane.x.y` written in a string (a subprocess's `-c` code, a
`monkeypatch.setattr("dataplane....")` target). A test helper imported by module name
(`from fake_host import ...`, pytest puts each test directory on sys.path) is followed too.
"""

from __future__ import annotations

import ast
import re
import tomllib
from collections.abc import Iterable
from functools import cache
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("dataplane",)  # what the compiled modules belong to
DOTTED_IN_TEXT = re.compile(r"\b(dataplane(?:\.[A-Za-z_]\w*)+)")


def compiled_paths() -> list[str]:
    """pyproject.toml's list: paths from the repository's root, `dataplane/...py`."""
    config = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    return list(config["tool"]["pysozu"]["compile"])


def module_file(name: str) -> Path | None:
    """The source file of a dotted module name of the project, if there is one."""
    if name.split(".")[0] not in PACKAGES:
        return None
    base = REPO.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _package_of(path: Path) -> list[str]:
    """The dotted package a project file is in, for its relative imports (that of a
    package's `__init__.py` is the package itself)."""
    return list(path.relative_to(REPO).with_suffix("").parts)[:-1]


def imported_names(path: Path) -> set[str]:
    """Every dotted name a file imports, or may: see the module's docstring."""
    source = path.read_text(encoding="utf-8")
    tree = ast.parse(source, filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                try:
                    package = _package_of(path)
                except ValueError:  # a relative import outside the project: none here
                    continue
                package = package[: len(package) - node.level + 1]
                base = ".".join([*package, *([node.module] if node.module else [])])
            else:
                base = node.module or ""
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names if alias.name != "*")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            names.update(DOTTED_IN_TEXT.findall(node.value))
    return {name for name in names if name}


def _helper_file(name: str, beside: Path) -> Path | None:
    """A test helper imported by its module name from the test's own directory."""
    if "." in name:
        return None
    candidate = beside.parent / f"{name}.py"
    return candidate if candidate.is_file() and candidate != beside else None


def _files_of(name: str, importer: Path) -> list[Path]:
    """The project files that importing `name` runs: the module and its packages' inits."""
    helper = _helper_file(name, importer)
    if helper is not None:
        return [helper]
    parts = name.split(".")
    files = []
    for end in range(1, len(parts) + 1):
        found = module_file(".".join(parts[:end]))
        if found is not None:
            files.append(found)
    return files


@cache
def _direct(path: Path) -> frozenset[Path]:
    found: set[Path] = set()
    for name in imported_names(path):
        found.update(_files_of(name, path))
    return frozenset(found)


def reached(start: Path) -> set[Path]:
    """Every project file that `start` imports, directly or transitively."""
    seen: set[Path] = set()
    todo = [start]
    while todo:
        for found in _direct(todo.pop()):
            if found not in seen:
                seen.add(found)
                todo.append(found)
    return seen


def compiled_reached(test_files: Iterable[Path]) -> dict[Path, set[str]]:
    """For each test file, the compiled modules (pyproject's paths) it reaches; files that
    reach none are left out."""
    compiled = {REPO / path: path for path in compiled_paths()}
    selected: dict[Path, set[str]] = {}
    for test_file in test_files:
        modules = {compiled[f] for f in reached(test_file) if f in compiled}
        if modules:
            selected[test_file] = modules
    return selected


def unit_tests_of_compiled_modules() -> dict[Path, set[str]]:
    """The unit test files (tests/unit/test_*.py) that reach a compiled module."""
    return compiled_reached(sorted((REPO / "tests" / "unit").glob("test_*.py")))
