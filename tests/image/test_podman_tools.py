"""When the image tests run, skip or fail (no podman needed: the decision only)."""

from __future__ import annotations

import podman_tools
import pytest


@pytest.mark.parametrize(
    ("installed", "uid", "expected"),
    [
        ({"podman", "mmdebstrap", "runc"}, 1000, None),
        ({"podman", "mmdebstrap", "runc"}, 0, None),
        (set(), 1000, True),  # podman cannot exist here: skip, saying so
        (set(), 0, False),  # root (CI): scripts/test installs them, so their absence fails
        ({"podman", "runc"}, 0, False),
    ],
)
def test_image_tests_skip_only_where_podman_cannot_exist(
    monkeypatch: pytest.MonkeyPatch, installed: set[str], uid: int, expected: bool | None
) -> None:
    monkeypatch.setattr(podman_tools, "_which", lambda tool: tool if tool in installed else None)
    monkeypatch.setattr("os.geteuid", lambda: uid)
    reason = podman_tools.unavailable_reason()
    if expected is None:
        assert reason is None
    else:
        assert reason is not None
        message, skip = reason
        assert skip is expected
        assert "not installed" in message
