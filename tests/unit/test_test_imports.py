"""Test modules import their helpers by module name (pytest puts each test directory on
sys.path): `from tests.integration.x import ...` works in one file's run and breaks the whole
suite's collection, so it is refused here, where it is cheap to see."""

from __future__ import annotations

import re
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
PACKAGE_IMPORT = re.compile(r"^\s*(from|import)\s+tests[.\s]", re.MULTILINE)


def test_no_test_module_imports_the_tests_package() -> None:
    offenders = [
        str(path.relative_to(TESTS))
        for path in TESTS.rglob("*.py")
        if PACKAGE_IMPORT.search(path.read_text(encoding="utf-8"))
    ]
    assert offenders == [], f"import helpers by module name instead: {offenders}"


def test_test_module_names_are_unique_across_directories() -> None:
    seen: dict[str, Path] = {}
    clashes = []
    for path in TESTS.rglob("test_*.py"):
        if path.name in seen:
            clashes.append(f"{seen[path.name]} and {path}")
        seen[path.name] = path
    assert clashes == [], f"pytest cannot collect two test modules of one name: {clashes}"
