"""Runs the coverage-guided fuzz targets of fuzz/targets/ with atheris (libFuzzer for Python).

A target is one file, `fuzz/targets/<name>.py`, that defines:

- `one_input(data: bytes) -> None`: feed the bytes to the code under test; it returns for every
  answer the code documents for bad input (its error types, caught in the target) and raises
  for anything else (a crash). Its docstring names the expected errors.
- optionally `seeds() -> Iterable[bytes]`: seeds made from the tests' own corpora
  (tests/unit/fixtures), added to the hand-picked files of `fuzz/corpus/<name>/`;
- optionally `MAX_LEN = n`: the largest input libFuzzer makes (default 4096);
- optionally `DICTIONARY`: byte strings the mutator splices in (header names, keywords), which
  it would take long to guess byte by byte.

Nothing else registers a target: this file and the smoke test find them by globbing.

Each target runs in a child process (`--child`), where atheris instruments `dataplane` as it is
imported and libFuzzer drives `one_input`. libFuzzer's own bounds are used: `-max_total_time`,
`-runs` (so a slow machine is bounded too), `-timeout` per input (a hang is a finding),
`-rss_limit_mb`. Run it with `fuzz/run --help`.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import importlib.util
import os
import shutil
import subprocess
import sys
import traceback
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path
from types import ModuleType
from typing import Any

FUZZ_DIR = Path(__file__).resolve().parent
REPO = FUZZ_DIR.parent
TARGETS_DIR = FUZZ_DIR / "targets"
CORPUS_DIR = FUZZ_DIR / "corpus"
WORK_DIR = FUZZ_DIR / ".work"  # grown corpora and crash artifacts of local runs (git-ignored)

CI_TIME = 10  # seconds per target in the test suite (9 targets: 90 s of the suite)
CI_RUNS = 300_000  # and at most this many inputs, whichever comes first
DEFAULT_MAX_LEN = 4096


def target_names() -> list[str]:
    return sorted(path.stem for path in TARGETS_DIR.glob("*.py") if not path.stem.startswith("_"))


@functools.cache
def load_target(name: str) -> ModuleType:
    """Import fuzz/targets/<name>.py by path, once (the repository root is never put on
    sys.path: its `operator/` directory would shadow the standard library's module)."""
    path = TARGETS_DIR / f"{name}.py"
    if not path.is_file():
        raise SystemExit(f"no fuzz target {name!r}; known: {', '.join(target_names())}")
    spec = importlib.util.spec_from_file_location(f"fuzz_target_{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _one_input(module: ModuleType) -> Callable[[bytes], None]:
    function: Callable[[bytes], None] = module.one_input
    return function


def seed_inputs(name: str, module: ModuleType) -> list[bytes]:
    """The committed seeds of fuzz/corpus/<name>/, then those the target derives."""
    found = [path.read_bytes() for path in sorted((CORPUS_DIR / name).glob("*")) if path.is_file()]
    extra: Callable[[], Iterable[bytes]] | None = getattr(module, "seeds", None)
    if extra is not None:
        found.extend(extra())
    return found


def replay(name: str, inputs: Iterable[bytes]) -> int:
    """Run inputs through a target without libFuzzer: the number that crashed (traceback shown)."""
    one_input = _one_input(load_target(name))
    warnings.simplefilter("ignore")
    crashed = 0
    for data in inputs:
        try:
            one_input(data)
        except Exception:
            crashed += 1
            print(f"{name}: crash on {data[:200]!r}", file=sys.stderr)
            traceback.print_exc()
    return crashed


# -- the child: one target under libFuzzer ------------------------------------------------------


def child(name: str, libfuzzer_args: list[str]) -> None:
    import atheris

    warnings.simplefilter("ignore")  # e.g. re's FutureWarning for every fuzzed regex

    # (atheris's "RegEx" hook cannot handle bytes patterns, which every parser here uses.)
    atheris.enabled_hooks.add("str")  # startswith/endswith comparisons guide the mutator
    with atheris.instrument_imports(include=["dataplane"]):
        module = load_target(name)
    atheris.Setup([sys.argv[0], *libfuzzer_args], _one_input(module))
    atheris.Fuzz()


# -- the parent: prepares corpora, runs each target's child, reports ----------------------------


def _write_seeds(directory: Path, inputs: Iterable[bytes]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for data in inputs:
        (directory / hashlib.sha1(data).hexdigest()).write_bytes(data)


def _dictionary_argument(module: ModuleType, path: Path) -> list[str]:
    words: Iterable[bytes] | None = getattr(module, "DICTIONARY", None)
    if not words:
        return []
    _write_dictionary(path, words)
    return [f"-dict={path}"]


def _write_dictionary(path: Path, words: Iterable[bytes]) -> None:
    """libFuzzer's dictionary format: one quoted word a line, other bytes as \\xNN."""
    lines = []
    for word in words:
        text = "".join(
            chr(byte) if 0x20 <= byte < 0x7F and byte not in b'"\\' else f"\\x{byte:02x}"
            for byte in word
        )
        lines.append(f'"{text}"\n')
    path.write_text("".join(lines))


def run_target(name: str, options: argparse.Namespace, work: Path) -> bool:
    """Fuzz one target; True when it found nothing."""
    module = load_target(name)
    corpus = work / name
    if options.fresh and corpus.exists():
        shutil.rmtree(corpus)
    _write_seeds(corpus, seed_inputs(name, module))
    artifacts = work / "artifacts"
    artifacts.mkdir(parents=True, exist_ok=True)
    max_len = getattr(module, "MAX_LEN", DEFAULT_MAX_LEN)
    arguments = [
        f"-max_total_time={options.time}" if options.time else "-max_total_time=0",
        f"-runs={options.runs}" if options.runs else "-runs=-1",
        f"-timeout={options.timeout}",
        f"-rss_limit_mb={options.rss_limit_mb}",
        f"-max_len={max_len}",
        f"-artifact_prefix={artifacts}/{name}-",
        "-print_final_stats=1",
        *_dictionary_argument(module, work / f"{name}.dict"),
        *options.libfuzzer,
        str(corpus),
    ]
    command = [sys.executable, "-P", str(Path(__file__).resolve()), "--child", name, *arguments]
    print(f"==> fuzz {name}: {' '.join(arguments)}", flush=True)
    before = set(artifacts.iterdir())
    status = subprocess.run(command, cwd=REPO, check=False).returncode
    found = sorted(set(artifacts.iterdir()) - before)
    if status == 0 and not found:
        return True
    print(f"!! {name}: libFuzzer exited with status {status}", file=sys.stderr)
    for path in found:
        print(
            f"!! {name}: finding {path}\n   input: {path.read_bytes()[:2000]!r}\n"
            f"   replay it: fuzz/run --replay {name} {path}",
            file=sys.stderr,
        )
    return False


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fuzz/run",
        description=(
            "Fuzz pysozu's parsers with atheris. With no TARGET, every target runs in turn. "
            f"Defaults are the test suite's bounds ({CI_TIME} s or {CI_RUNS} inputs per target); "
            "for a long run give --time and --runs 0, e.g. `fuzz/run --time 3600 --runs 0 "
            "http_request`. Grown corpora and findings go to fuzz/.work/ (kept between runs)."
        ),
        epilog=(
            "Arguments after `--` go to libFuzzer (e.g. -- -seed=1234; not -jobs or -fork). "
            "A finding is replayed without libFuzzer by --replay TARGET FILE..."
        ),
    )
    parser.add_argument(
        "targets",
        nargs="*",
        metavar="TARGET",
        help="targets to run (with --replay: TARGET FILE...)",
    )
    parser.add_argument("--list", action="store_true", help="list the targets and exit")
    parser.add_argument(
        "--time", type=int, default=CI_TIME, help="seconds per target (0: no limit)"
    )
    parser.add_argument(
        "--runs", type=int, default=CI_RUNS, help="inputs per target at most (0: no limit)"
    )
    parser.add_argument(
        "--timeout", type=int, default=10, help="seconds one input may take before it is a hang"
    )
    parser.add_argument("--rss-limit-mb", type=int, default=2048, help="memory limit (MB)")
    parser.add_argument("--work", type=Path, default=WORK_DIR, help="where corpora and findings go")
    parser.add_argument("--fresh", action="store_true", help="start from the seeds only")
    parser.add_argument(
        "--replay",
        action="store_true",
        help="run FILEs (or, with none, the seeds) through TARGET without libFuzzer",
    )
    return parser


def main(argv: list[str]) -> int:
    if argv[:1] == ["--child"]:
        child(argv[1], argv[2:])
        return 0
    libfuzzer: list[str] = []
    if "--" in argv:
        at = argv.index("--")
        argv, libfuzzer = argv[:at], argv[at + 1 :]
    options: Any = _parser().parse_args(argv)
    options.libfuzzer = libfuzzer
    if options.list:
        for name in target_names():
            doc = (load_target(name).__doc__ or "").strip().splitlines()
            print(f"{name:20} {doc[0] if doc else ''}")
        return 0
    if options.replay:
        if not options.targets:
            raise SystemExit("--replay needs a TARGET (and FILEs, or none for the seeds)")
        name, files = options.targets[0], options.targets[1:]
        inputs = (
            [Path(file).read_bytes() for file in files]
            if files
            else seed_inputs(name, load_target(name))
        )
        crashed = replay(name, inputs)
        print(f"{name}: {len(inputs)} input(s) replayed, {crashed} crashed")
        return 1 if crashed else 0
    names = options.targets or target_names()
    for name in names:
        load_target(name)  # an unknown name fails before anything runs
    failed = [name for name in names if not run_target(name, options, options.work.resolve())]
    if failed:
        print(f"fuzzing found problems in: {', '.join(failed)}", file=sys.stderr)
        return 1
    print(f"fuzzing found nothing in: {', '.join(names)}")
    return 0


if __name__ == "__main__":
    # Children hash strings the same way in every run: set iteration orders stay put.
    os.environ.setdefault("PYTHONHASHSEED", "0")
    sys.exit(main(sys.argv[1:]))
