"""fuzz/fuzzer.py, imported by path: the repository root is never put on sys.path (its
`operator/` directory would shadow the standard library's `operator`)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[2]
FUZZER_PATH = REPO / "fuzz" / "fuzzer.py"


def load_fuzzer() -> ModuleType:
    name = "pysozu_fuzzer"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, FUZZER_PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


fuzzer = load_fuzzer()
TARGETS: list[str] = fuzzer.target_names()
