"""What pyproject.toml cannot say: with PYSOZU_COMPILE=1 the modules listed under
`[tool.pysozu] compile` are built as C extensions by mypyc, as the Docker image is.

They are the per-request and per-connection path of an HTTP/1.1 request (the session, head
parsing, routing, buffers, timers, the event loop) and the per-request work of the metrics and
the access log (`bench/instructions --compare builds` counts what compiling saves). The session's
parts form one chain of classes (mypyc compiles single inheritance only). The same files are
installed as Python source beside them, and without PYSOZU_COMPILE (or in an editable install)
pysozu is pure Python, the same code, slower.
A worker says which modules it runs compiled when it starts (dataplane/build_info.py).
Needs a C compiler and Python's headers (checked first: build_backend.compiler_problem); mypy
comes into the build environment by itself (build_backend.py), or, with
--no-build-isolation, must be installed already.

A source build (`pip install .`, the sdist) is pure Python unless PYSOZU_COMPILE=1 asks,
even where a compiler is present: it then needs neither a compiler nor mypy and its
dependencies in the build environment, takes seconds rather than a minute or more, and is
the same on every machine. A compiling build never falls back to pure Python: a failure
fails the install, since pip shows a build's messages only when it fails, and a silent
fallback would leave a user who asked for the compiled build with the slower one. Users get
the compiled build from its wheel: `scripts/build-wheels` makes both wheels, and pip prefers
the platform's compiled wheel (cp3XX-cp3XX-linux_<arch>) to the pure one (py3-none-any)
wherever both are offered.
"""

import os
import tomllib

from setuptools import setup

ext_modules = []
if os.environ.get("PYSOZU_COMPILE") == "1":
    from build_backend import compiler_problem

    problem = compiler_problem()
    if problem is not None:
        raise SystemExit(
            f"PYSOZU_COMPILE=1: {problem}; without PYSOZU_COMPILE, pysozu installs as pure Python"
        )
    try:
        from mypyc.build import mypycify
    except ImportError:
        raise SystemExit(
            "PYSOZU_COMPILE=1: mypyc is missing from the build environment "
            "(with --no-build-isolation: pip install 'mypy>=1.10' first)"
        ) from None
    with open("pyproject.toml", "rb") as file:
        modules = tomllib.load(file)["tool"]["pysozu"]["compile"]
    # group_name: the modules share one runtime library, pysozu_compiled__mypyc.*.so
    ext_modules = mypycify(modules, opt_level="3", group_name="pysozu_compiled")

setup(ext_modules=ext_modules)
