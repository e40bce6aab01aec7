"""The protocol's JSON shape: sozu's serde JSON, validated on the way in."""

import pytest

from dataplane.command import codec
from dataplane.command.address import SocketAddress
from dataplane.command.messages import (
    VERB_TYPES,
    VERBS,
    Cluster,
    Empty,
    LoadBalancingAlgorithms,
    QueryMetricsOptions,
    Request,
    RequestHttpFrontend,
    RulePosition,
    WorkerRequest,
)
from dataplane.command.responses import (
    ClusterHashes,
    Response,
    ResponseContent,
    ResponseStatus,
    RunState,
    WorkerInfo,
    WorkerInfos,
    WorkerResponses,
)

# Records as sozu 2.1 writes them in a state file (see sozu's state_compat test for the shape).
SOZU_ADD_CLUSTER = (
    b'{"id":"PROXY-MANAGER-1","content":{"request_type":{"ADD_CLUSTER":{"cluster_id":"app-1",'
    b'"sticky_session":false,"https_redirect":false,"proxy_protocol":null,"load_balancing":0,'
    b'"answer_503":null,"load_metric":0}}}}'
)
SOZU_ADD_FRONTEND = (
    b'{"id":"PROXY-MANAGER-2","content":{"request_type":{"ADD_HTTP_FRONTEND":{"cluster_id":"app-1",'
    b'"address":{"ip":{"inner":{"V4":2130706433}},"port":80},"hostname":"example.com",'
    b'"path":{"kind":0,"value":"/"},"method":null,"position":2,"tags":{}}}}}'
)


def test_sozu_records_decode() -> None:
    cluster = codec.decode(SOZU_ADD_CLUSTER, WorkerRequest)
    assert cluster.content.verb == "add_cluster"
    assert cluster.content.body.cluster_id == "app-1"
    assert cluster.content.body.load_balancing is LoadBalancingAlgorithms.ROUND_ROBIN
    front = codec.decode(SOZU_ADD_FRONTEND, WorkerRequest).content.body
    assert isinstance(front, RequestHttpFrontend)
    assert front.address == SocketAddress.parse("127.0.0.1:80")
    assert front.position is RulePosition.TREE


def test_encoding_is_sozu_shape() -> None:
    request = Request.of(remove_cluster="app")
    assert codec.encode(request) == b'{"request_type":{"REMOVE_CLUSTER":"app"}}'
    assert codec.encode(Request.of(logging="debug")) == b'{"request_type":{"LOGGING":"debug"}}'


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b'{"request_type":{}}', "exactly one verb, got 0"),
        (b'{"request_type":{"REMOVE_CLUSTER":"a","SAVE_STATE":"x"}}', "exactly one verb, got 2"),
        (b'{"request_type":{"NOT_A_VERB":1}}', "unknown field `NOT_A_VERB`"),
        (b'{"request_type":{"ADD_CLUSTER":{}}}', "cluster_id"),
        (b'{"request_type":{"ADD_CLUSTER":{"cluster_id":"a","bogus":1}}}', "bogus"),
        (b'{"request_type":{"ADD_CLUSTER":{"cluster_id":"a","load_balancing":9}}}', "Invalid enum"),
        (b"[1,2", "Expected `object`"),
        (b'{"request_type"', "truncated|malformed"),
    ],
)
def test_invalid_requests_name_the_problem(body: bytes, problem: str) -> None:
    with pytest.raises(codec.DecodeError, match=problem):
        codec.decode(body, Request)


def test_every_payload_less_verb_round_trips() -> None:
    """Every verb whose payload is `Empty` or a scalar encodes and decodes to itself."""
    assert len(VERBS) == 57  # 55 of sozu 2.1 + 2 worker-only (set_health_prober, ...)
    samples = {"Empty | None": Empty(), "str | None": "x", "int | None": 3}
    checked = 0
    for verb in VERBS:
        body = samples.get(str(VERB_TYPES[verb]))
        if body is None:
            continue
        request = Request.of(**{verb: body})
        assert request.verb == verb
        assert codec.decode(codec.encode(request), Request) == request
        checked += 1
    assert checked == 19  # status, list_workers, save_state, upgrade_worker, logging...
    options = Request.of(query_metrics=QueryMetricsOptions(list=True, cluster_ids=["a"]))
    assert codec.decode(codec.encode(options), Request) == options


def test_query_metrics_field_named_list() -> None:
    options = codec.decode(b'{"list":true,"cluster_ids":["a","b"]}', QueryMetricsOptions)
    assert options.list is True
    assert options.cluster_ids == ["a", "b"]


def test_responses_round_trip() -> None:
    workers = Response.ok(
        "done",
        ResponseContent.of(
            workers=WorkerInfos(vec=[WorkerInfo(id=0, pid=42, run_state=RunState.RUNNING)])
        ),
    )
    data = codec.encode(workers)
    assert data.startswith(b'{"status":0,"message":"done","content":{"content_type":{"WORKERS"')
    assert codec.decode(data, Response) == workers
    nested = Response.ok(
        content=ResponseContent.of(
            worker_responses=WorkerResponses(
                map={"main": ResponseContent.of(cluster_hashes=ClusterHashes(map={"a": 1}))}
            )
        )
    )
    decoded = codec.decode(codec.encode(nested), Response)
    assert decoded.content is not None
    assert decoded.content.kind == "worker_responses"
    assert decoded.content.value.map["main"].value.map == {"a": 1}
    assert Response.failure("nope").status is ResponseStatus.FAILURE


def test_cluster_defaults_follow_sozu() -> None:
    cluster = Cluster(cluster_id="a")
    assert cluster.load_balancing is LoadBalancingAlgorithms.ROUND_ROBIN
    assert cluster.sticky_session is False
    assert cluster.https_redirect is False
