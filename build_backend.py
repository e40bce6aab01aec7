"""pysozu's build backend: setuptools', plus mypy and pysozu's own dependencies in the build
environment when the build compiles (PYSOZU_COMPILE=1, see setup.py). So
`PYSOZU_COMPILE=1 pip install .` needs nothing installed beforehand, and a plain build
downloads no compiler it does not use."""

from __future__ import annotations

import os
import tomllib

from setuptools import build_meta
from setuptools.build_meta import (  # noqa: F401 (the hooks this backend passes on unchanged)
    build_editable,
    build_sdist,
    build_wheel,
    get_requires_for_build_editable,
    get_requires_for_build_sdist,
    prepare_metadata_for_build_editable,
    prepare_metadata_for_build_wheel,
)

COMPILER = "mypy>=1.10"  # mypyc comes with mypy


def get_requires_for_build_wheel(config_settings: dict[str, str] | None = None) -> list[str]:
    if os.environ.get("PYSOZU_COMPILE") == "1":
        # mypyc type-checks what it compiles, so it needs the packages the code imports too.
        # (Not setuptools' own answer: it runs setup.py, which needs mypyc already, and adds
        # nothing here: setup.py has no setup_requires.)
        with open("pyproject.toml", "rb") as file:
            dependencies: list[str] = tomllib.load(file)["project"]["dependencies"]
        return [COMPILER, *dependencies]
    return build_meta.get_requires_for_build_wheel(config_settings)
