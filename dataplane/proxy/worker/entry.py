"""The worker's own way in: `python -m dataplane worker --id N --fd N ...`, as main starts it
(main/spawn.py, `worker_argv`), without the `pysozu` command tree.

The full CLI (argparse, every verb's flags, the output formatters, the configuration file
reader) costs a worker several MB of memory it never uses: `dataplane/__main__.py` hands a
command line that starts with `worker` here first. Only main's exact form is recognised
(`--flag value` pairs, integer values, each flag once); anything else returns None and the
full CLI parses it as before, with its usage errors.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

REQUIRED = ("--id", "--fd", "--scm", "--configuration-state-fd")
OPTIONAL = {"--command-buffer-size": 1_000_000, "--max-command-buffer-size": None}


def parse_worker_argv(words: Sequence[str]) -> dict[str, int | None] | None:
    """The flags of `worker` (without the word `worker`) by name, or None if not main's form."""
    if len(words) % 2:
        return None
    found: dict[str, int | None] = {}
    for flag, value in zip(words[::2], words[1::2], strict=True):
        if flag in found or (flag not in REQUIRED and flag not in OPTIONAL):
            return None
        try:
            found[flag] = int(value)
        except ValueError:
            return None
    if any(flag not in found for flag in REQUIRED):
        return None
    return {**OPTIONAL, **found}


def run_worker(words: Sequence[str]) -> int | None:
    """Run the worker these flags describe; None (nothing done) if the CLI must parse them."""
    flags = parse_worker_argv(words)
    if flags is None:
        return None
    worker_id, command_buffer = flags["--id"], flags["--command-buffer-size"]
    assert worker_id is not None and command_buffer is not None  # REQUIRED, or a default
    max_buffer = flags["--max-command-buffer-size"] or 2 * command_buffer
    import setproctitle

    setproctitle.setproctitle(f"pysozu worker {worker_id}")
    from dataplane.proxy.worker.boot import begin_worker_process

    try:
        return begin_worker_process(
            _required(flags, "--fd"),
            _required(flags, "--scm"),
            _required(flags, "--configuration-state-fd"),
            worker_id,
            command_buffer,
            max_buffer,
        )
    except KeyboardInterrupt:  # as the CLI answers it (cli/app.py)
        return 130
    except BrokenPipeError:
        return 0


def _required(flags: dict[str, int | None], name: str) -> int:
    value = flags[name]
    assert value is not None
    return value


def main(words: Sequence[str] | None = None) -> int | None:
    """`python -m dataplane worker ...`: the exit status, or None to let the CLI handle it."""
    words = sys.argv[1:] if words is None else words
    if not words or words[0] != "worker":
        return None
    return run_worker(words[1:])
