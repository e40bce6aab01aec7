"""pysozu's build backend: setuptools', plus mypy and pysozu's own dependencies in the build
environment when the build compiles (PYSOZU_COMPILE=1, see setup.py). So
`PYSOZU_COMPILE=1 pip install .` needs nothing installed beforehand, and a plain build
downloads no compiler it does not use. A compiling build without a C compiler or Python's
headers stops at once, saying which (`compiler_problem`), before anything is downloaded."""

from __future__ import annotations

import os
import shlex
import shutil
import sysconfig
import tomllib
from pathlib import Path

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


def compiler_problem() -> str | None:
    """Why this Python cannot build C extensions here, or None: the C compiler that setuptools
    would run ($CC, else the one Python was built with) and Python.h must both be there."""
    command = shlex.split(os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc")
    if not command or shutil.which(command[0]) is None:
        name = command[0] if command else "cc"
        return f"no C compiler: {name!r} is not on PATH (Debian: apt-get install gcc; or set CC)"
    include = sysconfig.get_paths()["include"]
    if not (Path(include) / "Python.h").is_file():
        return (
            f"no Python headers: {include}/Python.h is missing"
            " (Debian: apt-get install python3-dev)"
        )
    return None


def get_requires_for_build_wheel(config_settings: dict[str, str] | None = None) -> list[str]:
    if os.environ.get("PYSOZU_COMPILE") == "1":
        problem = compiler_problem()
        if problem is not None:
            raise SystemExit(
                f"PYSOZU_COMPILE=1: {problem}; without PYSOZU_COMPILE, pysozu installs as "
                "pure Python"
            )
        # mypyc type-checks what it compiles, so it needs the packages the code imports too.
        # (Not setuptools' own answer: it runs setup.py, which needs mypyc already, and adds
        # nothing here: setup.py has no setup_requires.)
        with open("pyproject.toml", "rb") as file:
            dependencies: list[str] = tomllib.load(file)["project"]["dependencies"]
        return [COMPILER, *dependencies]
    return build_meta.get_requires_for_build_wheel(config_settings)
