"""The harness's errors: each says what the user can do about it."""

from __future__ import annotations


class BenchError(Exception):
    """Base of every error the harness reports instead of a traceback."""


class ToolMissing(BenchError):
    """A required program is absent and may not be installed here."""


class TargetFailed(BenchError):
    """A proxy or backend did not start, or stopped answering."""


class ScenarioSkipped(BenchError):
    """A scenario cannot run for a target (e.g. pysozu has no HTTPS yet); the reason is printed."""


class ParseError(BenchError):
    """A load generator printed something the harness cannot read."""
