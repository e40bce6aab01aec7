"""pysozu's dataplane: the proxy's processes and their command protocol.

`__version__` is the installed distribution's, read on first use from its `.dist-info`
directory on `sys.path`: `importlib.metadata` costs a process about 5 MB of imports (email,
zipfile, csv...), used here only when no such directory is found (an egg, a zip)."""

from __future__ import annotations

import os
import sys

__version__: str  # set by __getattr__ below on first use
DISTRIBUTION = "pysozu"


def __getattr__(name: str) -> str:
    if name != "__version__":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    global __version__
    __version__ = _installed_version()
    return __version__


def _installed_version() -> str:
    found = _dist_info_version(sys.path)
    if found is not None:
        return found
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(DISTRIBUTION)
    except PackageNotFoundError:  # running from a source tree that is not installed
        return "0.0.0+source"


def _dist_info_version(paths: list[str]) -> str | None:
    """The `Version:` of the first `pysozu-*.dist-info/METADATA` on these paths, in order."""
    prefix = DISTRIBUTION + "-"
    for entry in paths:
        try:
            names = sorted(os.listdir(entry or "."))
        except OSError:  # missing, a file (a zip), unreadable
            continue
        for name in names:
            if not (name.lower().startswith(prefix) and name.endswith(".dist-info")):
                continue
            try:
                with open(os.path.join(entry or ".", name, "METADATA"), encoding="utf-8") as f:
                    for line in f:
                        if line.startswith("Version:"):
                            return line.partition(":")[2].strip()
                        if not line.strip():  # end of the headers
                            break
            except OSError:
                continue
    return None
