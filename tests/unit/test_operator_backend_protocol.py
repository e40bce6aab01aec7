"""`backend-protocol` (nginx) and `pysozu.io/http2`: which clusters speak h2c to their backends
(HTTPS and GRPCS: tests/unit/test_operator_backend_tls.py)."""

from __future__ import annotations

import pytest
from ingress_operator.annotations import parse_annotations

NGINX = "nginx.ingress.kubernetes.io/"


@pytest.mark.parametrize("value", ["GRPC", "grpc", "H2C"])
def test_grpc_and_h2c_make_an_http2_cluster(value: str) -> None:
    options = parse_annotations({NGINX + "backend-protocol": value}, nginx=True)
    assert options.http2 and not options.problems
    assert options.cluster("c").http2 is True


@pytest.mark.parametrize("value", ["HTTP", "AUTO_HTTP"])
def test_plain_http_is_the_default(value: str) -> None:
    options = parse_annotations({NGINX + "backend-protocol": value}, nginx=True)
    assert not options.http2 and not options.problems
    assert options.cluster("c").http2 is None


@pytest.mark.parametrize("value", ["AJP", "FCGI", "bogus"])
def test_what_pysozu_does_not_speak_is_reported(value: str) -> None:
    options = parse_annotations({NGINX + "backend-protocol": value}, nginx=True)
    assert not options.http2
    assert any("backend-protocol" in problem and value in problem for problem in options.problems)


def test_without_nginx_annotations_backend_protocol_is_not_read() -> None:
    options = parse_annotations({NGINX + "backend-protocol": "GRPC"}, nginx=False)
    assert not options.http2


def test_the_pysozu_key() -> None:
    assert parse_annotations({"pysozu.io/http2": "true"}, nginx=False).http2
    options = parse_annotations({"pysozu.io/http2": "maybe"}, nginx=False)
    assert not options.http2 and options.problems
