"""The operator talks to the dataplane only through `dataplane.command` (DESIGN.md's layering).

import-linter holds the rule inside `dataplane`; it cannot see the operator, which is a
namespace directory mapped to `ingress_operator`, so this test reads its imports directly.
"""

import ast
from pathlib import Path

OPERATOR = Path(__file__).resolve().parents[2] / "operator"


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_operator_uses_only_the_command_layer() -> None:
    sources = sorted(OPERATOR.glob("*.py"))
    assert sources, "the operator's sources were not found"
    offenders = {
        f"{path.name}: {name}"
        for path in sources
        for name in imported_modules(path)
        if name.startswith("dataplane")
        and not name.startswith("dataplane.command")
        and name != "dataplane"
    }
    assert not offenders


def test_operator_is_not_importable_as_operator() -> None:
    import operator

    assert not (OPERATOR / "__init__.py").exists()
    assert hasattr(operator, "itemgetter")  # the standard library's module, not ours
