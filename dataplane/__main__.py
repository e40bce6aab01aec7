"""`python -m dataplane ...` is the `pysozu` command (workers are started this way).

A worker's command line, as main writes it, skips the command tree (proxy/worker/entry.py
says why): a worker never loads what only the CLI and main use."""

import sys

from dataplane.proxy.worker.entry import main as worker_main

status = worker_main()
if status is None:
    from dataplane.cli.app import main

    status = main()
sys.exit(status)
