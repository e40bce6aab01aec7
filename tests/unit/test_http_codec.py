"""The HTTP/1.1 codec against a corpus of raw messages, fed whole, byte by byte and in random
splits. Each corpus file (tests/unit/fixtures/http/*.txt) says what must come out: `ok` with
the facts the proxy relies on, or the status the client gets (400 for a request, 502 for a
backend response)."""

from __future__ import annotations

import codecs
import itertools
import random
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dataplane.proxy.errors import HttpSyntaxError
from dataplane.proxy.http1 import head as http_head
from dataplane.proxy.http1.body import (
    FORBIDDEN_TRAILERS,
    Body,
    ChunkedBody,
    LengthBody,
    UntilCloseBody,
)
from dataplane.proxy.http1.head import (
    HEAD_END,
    RequestParser,
    ResponseParser,
    has_bare_line_feed,
)
from dataplane.proxy.http1.head_scan import HeadScanner

CORPUS = Path(__file__).parent / "fixtures" / "http"
FRAMING_NAMES = {
    http_head.NO_BODY: "none",
    http_head.LENGTH: "length",
    http_head.CHUNKED: "chunked",
    http_head.UNTIL_CLOSE: "close",
}


@dataclass
class Case:
    name: str
    kind: str
    expect: str
    facts: dict[str, str]
    data: bytes


def _decode(text: str) -> bytes:
    return codecs.escape_decode(text.encode("utf-8"))[0]


def load_case(path: Path) -> Case:
    meta, _, raw = path.read_text().partition("\n---\n")
    facts = dict(line.split(": ", 1) for line in meta.splitlines() if line.strip())
    data = _decode("".join(raw.splitlines()))
    return Case(path.stem, facts.pop("kind"), facts.pop("expect"), facts, data)


CASES = [load_case(path) for path in sorted(CORPUS.glob("*.txt"))]


@dataclass
class Outcome:
    head: object = None
    framing: int = -1
    body: bytearray = field(default_factory=bytearray)
    error: int | None = None


def drive(kind: str, pieces: list[bytes]) -> Outcome:
    """Feed the codec the way the session does: find the head end, parse, then frame."""
    outcome = Outcome()
    buffer = bytearray()
    body: Body | None = None
    scanner: HeadScanner | None = None  # a request head in pieces, as the session follows it
    try:
        for piece in pieces:
            buffer += piece
            if outcome.head is None:
                if scanner is not None:
                    at = scanner.feed(buffer, 0, len(buffer)) - 4
                else:
                    at = buffer.find(HEAD_END)
                if at < 0:
                    if kind == "request":
                        scanner = scanner or HeadScanner()
                        scanner.feed(buffer, 0, len(buffer))
                    elif has_bare_line_feed(bytes(buffer)):
                        raise HttpSyntaxError("bare LF", 502)
                    continue
                head = bytes(buffer[: at + 4])
                del buffer[: at + 4]
                body = _parse(kind, head, outcome)
            if body is not None and not body.done:
                taken = body.feed(buffer, 0, len(buffer))
                outcome.body += buffer[:taken]
                del buffer[:taken]
    except HttpSyntaxError as error:
        assert error.status == (400 if kind == "request" or outcome.head is not None else 502)
        outcome.error = 400 if kind == "request" else 502
    return outcome


def _parse(kind: str, head: bytes, outcome: Outcome) -> Body | None:
    if kind == "request":
        request = RequestParser().parse(head)
        outcome.head = request
        outcome.framing = request.framing
    else:
        response = ResponseParser().parse(head)
        outcome.head = response
        outcome.framing = response.framing(b"GET")
    if outcome.framing == http_head.LENGTH:
        return LengthBody(outcome.head.content_length)  # type: ignore[attr-defined]
    if outcome.framing == http_head.CHUNKED:
        return ChunkedBody()
    if outcome.framing == http_head.UNTIL_CLOSE:
        return UntilCloseBody()
    return None


def check(case: Case, outcome: Outcome) -> None:
    if case.expect != "ok":
        assert outcome.error == int(case.expect), case.name
        return
    assert outcome.error is None, case.name
    head = outcome.head
    assert head is not None
    facts = case.facts
    if "framing" in facts:
        assert FRAMING_NAMES[outcome.framing] == facts["framing"]
    if "body" in facts:
        assert bytes(outcome.body) == _decode(facts["body"])
    if "host" in facts:
        assert head.host == facts["host"].encode()  # type: ignore[attr-defined]
    if "path" in facts:
        assert head.path == facts["path"]  # type: ignore[attr-defined]
    if "keep_alive" in facts:
        assert head.keep_alive is (facts["keep_alive"] == "true")  # type: ignore[attr-defined]
    if "upgrade" in facts:
        assert head.upgrade == facts["upgrade"].encode()  # type: ignore[attr-defined]
    if "status" in facts:
        assert head.status == int(facts["status"])  # type: ignore[attr-defined]


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({0, len(data), *(cut % (len(data) + 1) for cut in cuts)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_corpus_whole(case: Case) -> None:
    check(case, drive(case.kind, [case.data]))


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_corpus_byte_by_byte(case: Case) -> None:
    check(case, drive(case.kind, [case.data[i : i + 1] for i in range(len(case.data))]))


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_corpus_random_splits(case: Case) -> None:
    rng = random.Random(case.name)
    for _ in range(20):
        cuts = [rng.randrange(len(case.data) + 1) for _ in range(rng.randrange(1, 6))]
        check(case, drive(case.kind, split(case.data, cuts)))


def test_corpus_is_substantial() -> None:
    assert len([c for c in CASES if c.expect != "ok"]) >= 30
    assert {c.kind for c in CASES} == {"request", "response"}


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_every_split_gives_the_same_outcome(data: st.DataObject) -> None:
    case = data.draw(st.sampled_from(CASES))
    cuts = data.draw(st.lists(st.integers(min_value=0, max_value=len(case.data)), max_size=8))
    check(case, drive(case.kind, split(case.data, cuts)))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300), st.sampled_from(["request", "response"]))
def test_hostile_bytes_only_raise_syntax_errors(data: bytes, kind: str) -> None:
    outcome = drive(kind, [b"GET / HTTP/1.1\r\nHost: a\r\n" + data + b"\r\n\r\n"])
    assert outcome.error in (None, 400, 502)
    drive(kind, [data])


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.binary(min_size=0, max_size=40), max_size=6),
    st.lists(st.integers(min_value=0, max_value=500), max_size=8),
)
def test_chunked_framing_round_trip(chunks: list[bytes], cuts: list[int]) -> None:
    encoded = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks if c) + b"0\r\n\r\n"
    stream = encoded + b"NEXT"
    body = ChunkedBody()
    consumed = 0
    buffer = bytearray()
    for piece in split(stream, cuts):
        buffer += piece
        if not body.done:
            taken = body.feed(buffer, 0, len(buffer))
            consumed += taken
            del buffer[:taken]
    assert body.done
    assert consumed == len(encoded)
    assert bytes(buffer) == b"NEXT"  # the next message is left alone


def test_length_body_stops_at_its_length() -> None:
    body = LengthBody(3)
    data = b"abcGET"
    assert body.feed(data, 0, 2) == 2
    assert not body.done
    assert body.feed(data, 2, 6) == 1
    assert body.done


def test_request_removes_hop_by_hop_and_listed_headers() -> None:
    head = (
        b"GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, X-Secret\r\nKeep-Alive: 5\r\n"
        b"X-Secret: s\r\nTE: trailers\r\nProxy-Connection: x\r\nX-Kept: k\r\n\r\n"
    )
    request = RequestParser().parse(head)
    kept = http_head.strip_spans(request.block, request.removed)
    assert kept == b"\r\nHost: a\r\nX-Kept: k"


def test_response_removes_hop_by_hop_headers() -> None:
    head = b"HTTP/1.1 200 OK\r\nConnection: close\r\nKeep-Alive: 1\r\nContent-Length: 0\r\n\r\n"
    response = ResponseParser().parse(head)
    assert not response.keep_alive
    assert http_head.strip_spans(response.block, response.removed) == b"\r\nContent-Length: 0"


@pytest.mark.parametrize("name", sorted(FORBIDDEN_TRAILERS))
def test_trailer_fields_rfc_9110_forbids_are_refused(name: bytes) -> None:
    """Issue 16 (6): framing, routing, control and authentication fields in a trailer section
    are refused (never forwarded whole), whatever their case, wherever the reads split."""
    data = b"3\r\nabc\r\n0\r\nX-Before: 1\r\n" + name.upper() + b": x\r\n\r\n"
    for cut in range(1, len(data)):
        body = ChunkedBody()
        with pytest.raises(HttpSyntaxError, match="not allowed in trailers"):
            taken = body.feed(data, 0, cut)
            body.feed(data, taken, len(data))
        assert not body.done


def test_other_trailer_fields_pass_verbatim() -> None:
    data = b"0\r\nX-Host: a\r\nServer-Timing: x\r\nContent-MD5: y\r\nhost-x: z\r\n\r\nNEXT"
    body = ChunkedBody()
    assert body.feed(data, 0, len(data)) == len(data) - 4
    assert body.done
