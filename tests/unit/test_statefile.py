"""State files: sozu's format (JSON WorkerRequest records separated by "\\n\\0"), both ways."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dataplane.command.address import SocketAddress
from dataplane.command.messages import (
    AddBackend,
    Cluster,
    HttpListenerConfig,
    LoadBalancingAlgorithms,
    LoadMetric,
    Request,
    RequestHttpFrontend,
)
from dataplane.command.state import ConfigState
from dataplane.command.statefile import (
    StateFileError,
    decode_state,
    encode_state,
    read_state_file,
    write_state_file,
)

LOCAL_80 = SocketAddress.parse("127.0.0.1:80")
REQUESTS = [
    Request.of(add_http_listener=HttpListenerConfig(address=LOCAL_80)),
    Request.of(add_cluster=Cluster(cluster_id="app-1")),
    Request.of(
        add_http_frontend=RequestHttpFrontend(
            cluster_id="app-1", address=LOCAL_80, hostname="example.com"
        )
    ),
    Request.of(
        add_backend=AddBackend(
            cluster_id="app-1", backend_id="b", address=SocketAddress.parse("10.0.0.1:8080")
        )
    ),
]

# Records as sozu 2.1 writes them (command/tests/state_compat_v1_1_1.rs shape): oneof variants in
# SCREAMING_SNAKE_CASE, enums as integers, IPv4 addresses as {"ip": {"inner": {"V4": u32}}}.
SOZU_CLUSTER = (
    '{"id":"X","content":{"request_type":{"ADD_CLUSTER":{"cluster_id":"app-1",'
    '"sticky_session":false,"https_redirect":false,"proxy_protocol":null,"load_balancing":0,'
    '"answer_503":null,"load_metric":0}}}}'
)
SOZU_LISTENER = json.dumps(
    {
        "id": "SAVE-0",
        "content": {
            "request_type": {
                "ADD_HTTP_LISTENER": {
                    "address": {"ip": {"inner": {"V4": 2130706433}}, "port": 80},
                    "public_address": None,
                    "expect_proxy": False,
                    "sticky_name": "SOZUBALANCEID",
                    "front_timeout": 60,
                    "back_timeout": 30,
                    "connect_timeout": 3,
                    "request_timeout": 10,
                    "active": True,
                }
            }
        },
    }
)
SOZU_FRONTEND = json.dumps(
    {
        "id": "SAVE-2",
        "content": {
            "request_type": {
                "ADD_HTTP_FRONTEND": {
                    "cluster_id": "app-1",
                    "address": {"ip": {"inner": {"V4": 2130706433}}, "port": 80},
                    "hostname": "example.com",
                    "path": {"kind": 0, "value": "/"},
                    "method": None,
                    "position": 2,
                    "tags": {"owner": "me"},
                }
            }
        },
    }
)


def test_encoding_is_sozus_record_format() -> None:
    data = encode_state(REQUESTS)
    records = data.split(b"\n\0")
    assert records[-1] == b"" and len(records) == len(REQUESTS) + 1  # every record terminated
    first = json.loads(records[0])
    assert first["id"] == "SAVE-0"
    assert first["content"]["request_type"]["ADD_HTTP_LISTENER"]["address"] == {
        "ip": {"inner": {"V4": 2130706433}},
        "port": 80,
    }
    assert [json.loads(r)["id"] for r in records[:-1]] == ["SAVE-0", "SAVE-1", "SAVE-2", "SAVE-3"]


def test_round_trip() -> None:
    assert decode_state(encode_state(REQUESTS)) == (REQUESTS, [])
    assert decode_state(b"") == ([], [])


def test_a_state_file_written_by_sozu_loads() -> None:
    data = "\n\0".join([SOZU_LISTENER, SOZU_CLUSTER, SOZU_FRONTEND]).encode() + b"\n\0"
    requests, errors = decode_state(data)
    assert errors == []
    listener, cluster, frontend = (r.body for r in requests)
    assert listener.address == LOCAL_80 and listener.active is True
    assert cluster.cluster_id == "app-1"
    assert cluster.load_balancing == LoadBalancingAlgorithms.ROUND_ROBIN
    assert cluster.load_metric == LoadMetric.CONNECTIONS
    assert frontend.address == LOCAL_80 and frontend.tags == {"owner": "me"}
    state = ConfigState()
    for request in requests:
        state.dispatch(request)
    assert state.cluster_information("app-1").http_frontends == [frontend]


def test_bad_records_are_reported_and_the_rest_loads() -> None:
    data = b"\n\0".join(
        [
            encode_state(REQUESTS[:1]).removesuffix(b"\n\0"),
            b"not json",
            b'{"id":"X","content":{"request_type":{"NO_SUCH_VERB":{}}}}',
            b'{"id":"X","content":{"request_type":{}}}',
            b'{"id":"X","content":{"request_type":{"ADD_CLUSTER":{"cluster_id":5}}}}',
            encode_state(REQUESTS[1:2]).removesuffix(b"\n\0"),
        ]
    )  # no final separator: tolerated
    requests, errors = decode_state(data)
    assert requests == REQUESTS[:2]
    assert [error.split(":")[0] for error in errors] == [
        "record 2",
        "record 3",
        "record 4",
        "record 5",
    ]
    assert "exactly one verb" in errors[2]
    assert "cluster_id" in errors[3]


def test_write_is_atomic_and_private(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    target.write_bytes(b"old")
    write_state_file(target, REQUESTS)
    assert read_state_file(target) == (REQUESTS, [])
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o600
    assert os.listdir(tmp_path) == ["state.json"]  # no temporary file left behind


def test_file_errors(tmp_path: Path) -> None:
    with pytest.raises(StateFileError, match=r"cannot read state file .*missing"):
        read_state_file(tmp_path / "missing")
    with pytest.raises(StateFileError, match="cannot write state file"):
        write_state_file(tmp_path / "no-such-dir" / "state.json", REQUESTS)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.binary(max_size=60) | st.sampled_from([b"\n\0", b"{", b"}", b'"id"']), max_size=20)
)
def test_hostile_bytes_never_raise(chunks: list[bytes]) -> None:
    data = b"".join(chunks) + b"\n\0" + encode_state(REQUESTS[:1])
    requests, errors = decode_state(data)
    assert all(error.startswith("record ") for error in errors)
    assert requests[-1] == REQUESTS[0]  # garbage before it does not cost the good record
