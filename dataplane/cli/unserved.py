"""Flags that sozu's CLI has and pysozu accepts, but whose value changes nothing yet.

Main takes the request (the value is kept in the state, for the day pysozu acts on it), so the
CLI says it on stderr, naming the flag, before sending: a flag is never silently ignored.
"""

from __future__ import annotations

import argparse

NO_SHRINK = "it sizes sozu's stream slab; a pysozu stream is freed when it closes"
CERTIFICATE_VERSIONS = "the listener's TLS versions apply to every certificate"
CLUSTER_EXPECT_PROXY = (
    "a cluster does not decide whether clients send a PROXY header: a TCP listener's "
    "--expect-proxy does (with --send-proxy, the header read is relayed to the backend)"
)

TOP_LOOKS = {
    "skin": "pysozu top draws plain text, without colours or skins",
    "glyphs": "pysozu top draws no sparklines",
    "no-mouse": "pysozu top never captures the mouse",
}


def unserved_flags(args: argparse.Namespace) -> list[str]:
    """One `--flag: reason` line per flag of `args` that pysozu accepts but does not act on."""
    found = []
    if getattr(args, "h2_stream_shrink_ratio", None) is not None:
        found.append(f"--h2-stream-shrink-ratio: {NO_SHRINK}")
    command = getattr(args, "command", None)
    if command == "cluster" and getattr(args, "expect_proxy", False):
        found.append(f"--expect-proxy: {CLUSTER_EXPECT_PROXY}")
    if command == "top":
        found += [
            f"--{flag}: {reason}"
            for flag, reason in TOP_LOOKS.items()
            if getattr(args, flag.replace("-", "_"), None)
        ]
    if command == "certificate" and getattr(args, "tls_versions", None):
        found.append(f"--tls-versions: {CERTIFICATE_VERSIONS}")
    return found
