"""`python -m dataplane ...` is the `pysozu` command (workers are started this way)."""

import sys

from dataplane.cli.app import main

sys.exit(main())
