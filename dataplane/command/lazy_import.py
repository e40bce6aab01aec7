"""A module imported on the first use of one of its attributes, for the few whose import
costs every process megabytes that most configurations never use: `ssl`, `hashlib` and `hmac`
load OpenSSL's libcrypto and libssl (4.8 MB of resident memory together), which a worker
serving plain HTTP with no basic auth and no hash key never calls.

    if TYPE_CHECKING:
        import ssl
    else:
        ssl = lazy_module("ssl", globals())

The stand-in is bound to the module's global name. On its first attribute access it imports
the module and rebinds that global to it: every later use is a plain module attribute lookup,
as fast as with an ordinary `import`. Only the global of the module that made the stand-in is
rebound. A module must not read the stand-in's attributes while it is being imported (that
imports the module then, which is correct but saves nothing) nor keep a reference to it
(`x = ssl`); `except ssl.SSLError:` is evaluated only when an exception is being matched.
`importlib.util.LazyLoader` does not help here: the next `import` statement of the module
(in any other module) loads it.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any


class LazyModule:
    """Stands for module `name` in `namespace` (a module's globals) until first used."""

    __slots__ = ("_name", "_namespace")

    def __init__(self, name: str, namespace: dict[str, Any]) -> None:
        self._name = name
        self._namespace = namespace

    def load(self) -> ModuleType:
        module = importlib.import_module(self._name)
        global_name = self._name.rpartition(".")[2]
        if self._namespace.get(global_name) is self:
            self._namespace[global_name] = module
        return module

    def __getattr__(self, attribute: str) -> Any:
        return getattr(self.load(), attribute)

    def __repr__(self) -> str:
        return f"<lazy module {self._name!r}>"


def lazy_module(name: str, namespace: dict[str, Any]) -> Any:
    """The stand-in to bind to `name`'s last component in `namespace` (see the docstring)."""
    return LazyModule(name, namespace)
