"""The harness is a stdlib package beside bench/run, not an installed one: import it from there."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
