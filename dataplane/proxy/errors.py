"""The worker's errors: what went wrong, whose fault it was, and the HTTP status it maps to.

Peer errors (a client or backend sent bytes we refuse) carry the status answered to the client
and always close the connection: after a framing error the byte stream cannot be trusted.
"""

from __future__ import annotations


class ProxyError(Exception):
    """Base of every error raised by the worker's proxy code."""


class HttpSyntaxError(ProxyError):
    """A peer sent an HTTP/1.1 message we refuse to forward (400 for clients, 502 for backends)."""

    def __init__(self, reason: str, status: int = 400) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


class BootError(ProxyError):
    """The worker cannot start: one line on stderr, exit status 1."""
