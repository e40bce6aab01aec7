"""Which of pysozu's modules this process runs compiled (built by mypyc with PYSOZU_COMPILE=1,
as in the Docker image: setup.py) and which as Python source. A worker says so when it starts."""

from __future__ import annotations

import sys
from importlib.machinery import EXTENSION_SUFFIXES


def compiled_modules() -> list[str]:
    """The loaded `dataplane` modules that are C extensions."""
    suffixes = tuple(EXTENSION_SUFFIXES)
    return sorted(
        name
        for name, module in list(sys.modules.items())
        if name.startswith("dataplane.")
        and (getattr(module, "__file__", None) or "").endswith(suffixes)
    )


def describe() -> str:
    compiled = compiled_modules()
    if not compiled:
        return "pure Python"
    return "compiled: " + ", ".join(name.rsplit(".", 1)[-1] for name in compiled)
