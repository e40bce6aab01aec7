"""What can stop main from starting or from applying a change."""

from __future__ import annotations


class MainError(Exception):
    """A problem main reports to the user in one clear line (never a traceback)."""


class CommandSocketInUse(MainError):
    """Another live pysozu answers on the command socket."""


class ListenerBindError(MainError):
    """A listening socket could not be bound; nothing was changed."""


class SpawnError(MainError):
    """A worker process could not be started."""
