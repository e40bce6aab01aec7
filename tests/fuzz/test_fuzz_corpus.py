"""The fuzz targets without the fuzzer: each keeps its contract, and every seed (the files of
fuzz/corpus/<target>/ and those made from tests/unit/fixtures) runs through it cleanly."""

from __future__ import annotations

import pytest
from fuzz_support import TARGETS, fuzzer


@pytest.mark.parametrize("target", TARGETS)
def test_target_keeps_the_contract(target: str) -> None:
    module = fuzzer.load_target(target)
    assert callable(module.one_input)
    assert "Expected" in (module.__doc__ or ""), "the docstring names the expected errors"
    assert 0 < getattr(module, "MAX_LEN", fuzzer.DEFAULT_MAX_LEN) <= 65536
    assert all(isinstance(word, bytes) for word in getattr(module, "DICTIONARY", ()))


@pytest.mark.parametrize("target", TARGETS)
def test_every_seed_runs_cleanly(target: str) -> None:
    seeds = fuzzer.seed_inputs(target, fuzzer.load_target(target))
    assert 1 <= len(seeds) <= 1000, "seeds are few"
    assert all(len(seed) <= 65536 for seed in seeds), "seeds are small"
    assert fuzzer.replay(target, seeds) == 0


def test_replay_reports_a_crash(capsys: pytest.CaptureFixture[str]) -> None:
    """A target raising anything but its expected errors counts as a crash."""
    assert fuzzer.replay("request_path", [b"\x00/a/b"]) == 0
    module = fuzzer.load_target("request_path")
    original = module.route_path
    module.route_path = lambda target: 1 / 0  # a stand-in for a parser bug
    try:
        assert fuzzer.replay("request_path", [b"\x00/a/b"]) == 1
    finally:
        module.route_path = original
    assert "ZeroDivisionError" in capsys.readouterr().err
