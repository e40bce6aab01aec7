"""Property tests of ConfigState over random request sequences (valid and invalid ones)."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dataplane.command.address import SocketAddress
from dataplane.command.messages import (
    ActivateListener,
    AddBackend,
    AddCertificate,
    CertificateAndKey,
    Cluster,
    DeactivateListener,
    HealthCheckConfig,
    HttpListenerConfig,
    HttpsListenerConfig,
    ListenerType,
    LoadBalancingParams,
    PathRule,
    PathRuleKind,
    RemoveBackend,
    RemoveCertificate,
    RemoveListener,
    ReplaceCertificate,
    Request,
    RequestHttpFrontend,
    RequestTcpFrontend,
    RequestUdpFrontend,
    SetHealthCheck,
    TcpListenerConfig,
    UdpListenerConfig,
    UpdateHttpListenerConfig,
    UpdateTcpListenerConfig,
)
from dataplane.command.state import ConfigState, StateError, certificate_fingerprint
from dataplane.command.statefile import decode_state, encode_state

FIXTURES = Path(__file__).parent / "fixtures" / "config"
CERTS = [
    CertificateAndKey(
        certificate=(FIXTURES / "certificate.pem").read_text(),
        key=(FIXTURES / "key.pem").read_text(),
    ),
    CertificateAndKey(
        certificate=(FIXTURES / "other_certificate.pem").read_text(),
        key=(FIXTURES / "other_key.pem").read_text(),
    ),
]
FINGERPRINTS = [certificate_fingerprint(c.certificate) for c in CERTS]


# A small universe, so random sequences often hit existing objects (and collide). Invalid values
# are in it, less often than valid ones; each request mostly aims at the address where the stage
# below puts a listener of the right kind.
def at(port: int) -> SocketAddress:
    return SocketAddress.parse(f"127.0.0.1:{port}")


HTTP_PORT, HTTPS_PORT, STREAM_PORT = 80, 443, 53  # TCP and UDP share port 53


def near(port: int) -> st.SearchStrategy[SocketAddress]:
    return st.sampled_from([at(port)] * 6 + [at(80), at(443), at(53), at(0)])


cluster_ids = st.sampled_from(["app", "api"] * 3 + ["", "a b"])
hostnames = st.sampled_from(["example.com", "*.example.com"] * 2 + ["bad host"])
paths = st.builds(
    PathRule,
    kind=st.sampled_from(list(PathRuleKind)),
    value=st.sampled_from(["", "/", "/api", "/", "(", "nope"]),
)
listener_targets = st.sampled_from(
    [
        (ListenerType.HTTP, at(HTTP_PORT)),
        (ListenerType.HTTPS, at(HTTPS_PORT)),
        (ListenerType.TCP, at(STREAM_PORT)),
        (ListenerType.UDP, at(STREAM_PORT)),
    ]
    * 2
    + [(ListenerType.HTTP, at(HTTPS_PORT)), (ListenerType.UDP, at(0))]
)
certificates = st.sampled_from([0, 1])


def routes(port: int) -> st.SearchStrategy[RequestHttpFrontend]:
    return st.builds(
        RequestHttpFrontend,
        cluster_id=st.none() | cluster_ids,
        address=near(port),
        hostname=hostnames,
        path=paths,
        method=st.none() | st.just("GET"),
        tags=st.dictionaries(st.sampled_from(["k", "j"]), st.sampled_from(["v", "w"]), max_size=2),
    )


def stream(kind: type[RequestTcpFrontend] | type[RequestUdpFrontend]) -> st.SearchStrategy[Any]:
    return st.builds(kind, cluster_id=cluster_ids, address=near(STREAM_PORT))


backends = st.builds(
    AddBackend,
    cluster_id=cluster_ids,
    backend_id=st.sampled_from(["b1", "b2"]),
    address=st.sampled_from([SocketAddress.parse(f"10.0.0.{i}:8000") for i in (1, 2)]),
    load_balancing_parameters=st.none()
    | st.builds(LoadBalancingParams, weight=st.sampled_from([1, 100])),
)
health = st.builds(
    HealthCheckConfig, uri=st.sampled_from(["/h", "/h", "h"]), interval=st.sampled_from([1, 1, 0])
)


def request(verb: str, bodies: st.SearchStrategy[Any]) -> st.SearchStrategy[Request]:
    return bodies.map(lambda body: Request.of(**{verb: body}))


listeners = st.one_of(
    request("add_http_listener", st.builds(HttpListenerConfig, address=near(HTTP_PORT))),
    request("add_https_listener", st.builds(HttpsListenerConfig, address=near(HTTPS_PORT))),
    request("add_tcp_listener", st.builds(TcpListenerConfig, address=near(STREAM_PORT))),
    request("add_udp_listener", st.builds(UdpListenerConfig, address=near(STREAM_PORT))),
    listener_targets.map(
        lambda t: Request.of(remove_listener=RemoveListener(proxy=t[0], address=t[1]))
    ),
    listener_targets.map(
        lambda t: Request.of(activate_listener=ActivateListener(proxy=t[0], address=t[1]))
    ),
    listener_targets.map(
        lambda t: Request.of(deactivate_listener=DeactivateListener(proxy=t[0], address=t[1]))
    ),
    request(
        "update_http_listener",
        st.builds(
            UpdateHttpListenerConfig,
            address=near(HTTP_PORT),
            front_timeout=st.sampled_from([5, 7, -1]),
        ),
    ),
    request(
        "update_tcp_listener",
        st.builds(UpdateTcpListenerConfig, address=near(STREAM_PORT), expect_proxy=st.booleans()),
    ),
)
frontends = st.one_of(
    request("add_http_frontend", routes(HTTP_PORT)),
    request("remove_http_frontend", routes(HTTP_PORT)),
    request("add_https_frontend", routes(HTTPS_PORT)),
    request("remove_https_frontend", routes(HTTPS_PORT)),
    request("add_tcp_frontend", stream(RequestTcpFrontend)),
    request("remove_tcp_frontend", stream(RequestTcpFrontend)),
    request("add_udp_frontend", stream(RequestUdpFrontend)),
    request("remove_udp_frontend", stream(RequestUdpFrontend)),
)
clusters = st.one_of(
    request(
        "add_cluster", st.builds(Cluster, cluster_id=cluster_ids, health_check=st.none() | health)
    ),
    request("remove_cluster", cluster_ids),
    request("set_health_check", st.builds(SetHealthCheck, cluster_id=cluster_ids, config=health)),
    request("remove_health_check", cluster_ids),
    request("add_backend", backends),
    backends.map(
        lambda b: Request.of(
            remove_backend=RemoveBackend(
                cluster_id=b.cluster_id, backend_id=b.backend_id, address=b.address
            )
        )
    ),
)
tls = st.one_of(
    st.builds(
        lambda a, i: Request.of(add_certificate=AddCertificate(address=a, certificate=CERTS[i])),
        near(HTTPS_PORT),
        certificates,
    ),
    st.builds(
        lambda a, i: Request.of(
            remove_certificate=RemoveCertificate(address=a, fingerprint=FINGERPRINTS[i])
        ),
        near(HTTPS_PORT),
        certificates,
    ),
    st.builds(
        lambda a, i: Request.of(
            replace_certificate=ReplaceCertificate(
                address=a, old_fingerprint=FINGERPRINTS[i], new_certificate=CERTS[1 - i]
            )
        ),
        near(HTTPS_PORT),
        certificates,
    ),
)
requests = st.one_of(listeners, frontends, frontends, clusters, tls, st.just(Request.of(status={})))

# Sequences usually start by setting the stage (one listener per kind, the clusters) so that the
# random tail reaches frontends, certificates and backends; then anything goes.
STAGE = [
    Request.of(add_http_listener=HttpListenerConfig(address=at(HTTP_PORT))),
    Request.of(add_https_listener=HttpsListenerConfig(address=at(HTTPS_PORT))),
    Request.of(add_tcp_listener=TcpListenerConfig(address=at(STREAM_PORT))),
    Request.of(add_udp_listener=UdpListenerConfig(address=at(STREAM_PORT))),
    Request.of(add_cluster=Cluster(cluster_id="app")),
    Request.of(add_cluster=Cluster(cluster_id="api")),
]
setup = st.lists(st.sampled_from(range(len(STAGE))), unique=True, min_size=3).map(
    lambda picks: [STAGE[i] for i in picks]
)
sequences = st.builds(
    lambda head, tail: head + tail, setup, st.lists(requests, min_size=15, max_size=60)
)

SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def build(sequence: list[Request]) -> ConfigState:
    state = ConfigState()
    for request in sequence:
        with contextlib.suppress(StateError):
            state.dispatch(request)
    return state


@pytest.mark.timeout(120)
@SETTINGS
@given(sequences)
def test_a_failing_dispatch_changes_nothing(sequence: list[Request]) -> None:
    state = ConfigState()
    for request in sequence:
        before, before_hash = state.copy(), state.hash()
        try:
            state.dispatch(request)
        except StateError as error:
            assert str(error)  # always says what and why
            assert state == before
            assert state.hash() == before_hash


@pytest.mark.timeout(120)
@SETTINGS
@given(sequences)
def test_generate_requests_replays_to_an_equal_state(sequence: list[Request]) -> None:
    state = build(sequence)
    rebuilt = ConfigState()
    for request in state.generate_requests():
        rebuilt.dispatch(request)  # must never fail
    assert rebuilt == state
    assert rebuilt.hash() == state.hash()
    assert rebuilt.cluster_hashes() == state.cluster_hashes()


@pytest.mark.timeout(120)
@SETTINGS
@given(sequences, sequences)
def test_diff_turns_one_state_into_the_other(first: list[Request], second: list[Request]) -> None:
    a, b = build(first), build(second)
    result = a.copy()
    for request in a.diff(b):
        result.dispatch(request)  # must never fail
    assert result == b
    assert a.diff(a.copy()) == []


@pytest.mark.timeout(120)
@SETTINGS
@given(sequences)
def test_state_file_round_trip(sequence: list[Request]) -> None:
    generated = build(sequence).generate_requests()
    decoded, errors = decode_state(encode_state(generated))
    assert errors == []
    assert decoded == generated
