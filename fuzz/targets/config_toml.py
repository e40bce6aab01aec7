"""The TOML configuration loader (config*.py): what `pysozu config check -c FILE` runs.

The input is a configuration file's bytes, decoded as `load_config` decodes them (bytes that
are not UTF-8 are its "not UTF-8 text" error), then `parse_config`. Files the configuration
names (certificates, keys, answers) are read relative to the working directory: the fuzzer
and the tests run from the repository root, so the seeds name tests/unit/fixtures/config/...

Expected answer to bad input: `ConfigError` (every problem, located). Anything else raised is
a crash. Properties checked (an AssertionError is a finding too): a configuration that loads
is one the proxy accepts (its requests build a routing state with no `StateError`, its
`server_config()` builds), and its requests survive the wire (encoded, decoded equal).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from dataplane.command import codec
from dataplane.command.config import ConfigError, parse_config
from dataplane.command.messages import Request
from dataplane.command.state import StateError

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "unit" / "fixtures" / "config"
MAX_LEN = 8192
DICTIONARY = (
    b"[[listeners]]\n",
    b'protocol = "https"\n',
    b'address = "127.0.0.1:8443"\n',
    b"[clusters.a]\n",
    b'frontends = [{ address = "127.0.0.1:8080", hostname = "a" }]\n',
    b'backends = [{ address = "127.0.0.1:9000" }]\n',
    b'path_type = "REGEX"',
    b'path = "/a"',
    b'certificate = "tests/unit/fixtures/config/certificate.pem"',
    b'key = "tests/unit/fixtures/config/key.pem"',
    b"[listeners.hsts]\n",
    b"[clusters.a.health_check]\n",
    b'load_balancing = "MAGLEV"',
    b"= true\n",
    b"= 4294967296\n",
    b'= ""\n',
    b"{ }",
)


def one_input(data: bytes) -> None:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return  # load_config's "not UTF-8 text" ConfigError
    try:
        config = parse_config(text, "fuzz.toml")
    except ConfigError:
        return
    try:
        config.routing_state()
    except StateError as error:
        raise AssertionError(f"a configuration that loads is refused: {error}") from None
    config.server_config()
    for request in config.generate_requests():
        assert codec.decode(codec.encode(request), Request) == request, request


def seeds() -> Iterator[bytes]:
    """sozu's sample (tests/unit/fixtures), its file names made relative to the repository."""
    sample = (FIXTURES / "sozu_sample.toml").read_text()
    for path in sorted(FIXTURES.iterdir()):
        sample = sample.replace(f'"{path.name}"', f'"{path.relative_to(REPO)}"')
    yield sample.encode()
