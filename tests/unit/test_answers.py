"""Default answers: built-ins, overrides, variables, sanitising, template validation."""

from __future__ import annotations

import html
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dataplane.command.address import SocketAddress
from dataplane.command.messages import CustomHttpAnswers, HttpListenerConfig
from dataplane.proxy.answers.responses import Answers, AnswersError, listener_answer_map
from dataplane.proxy.answers.templates import REASONS

STATUSES = sorted(REASONS)


def parse(response: bytes) -> tuple[int, dict[str, str], bytes]:
    """Split a raw response, checking its framing on the way."""
    head, blank, body = response.partition(b"\r\n\r\n")
    assert blank, response
    status_line, *lines = head.decode().split("\r\n")
    headers: dict[str, str] = {}
    for line in lines:
        key, _, value = line.partition(": ")
        assert key.lower() not in headers, f"duplicate header {key}"
        headers[key.lower()] = value
    assert int(headers["content-length"]) == len(body)
    return int(status_line.split()[1]), headers, body


class TestBuiltins:
    @pytest.mark.parametrize("status", STATUSES)
    def test_every_builtin_is_a_complete_closing_response(self, status: int) -> None:
        answers = Answers()
        code, headers, body = parse(
            answers.render(status, variables={"REQUEST_ID": "01RID", "ROUTE": "r"})
        )
        assert code == status
        assert headers["connection"] == "close"
        assert headers["sozu-id"] == "01RID"
        assert answers.closes_connection(status)
        if status in (301, 302, 308):
            assert body == b"" and "cache-control" not in headers
        else:
            assert headers["cache-control"] == "no-cache"
            assert f"{status} {REASONS[status]}".encode() in body

    def test_redirect_location_and_empty_headers_are_elided(self) -> None:
        answers = Answers()
        _, headers, _ = parse(answers.render(308, variables={"REDIRECT_LOCATION": "https://x/"}))
        assert headers["location"] == "https://x/"
        _, headers, _ = parse(answers.render(401))
        assert "www-authenticate" not in headers and "sozu-id" not in headers
        _, headers, _ = parse(
            answers.render(401, variables={"WWW_AUTHENTICATE": 'Basic realm="a"'})
        )
        assert headers["www-authenticate"] == 'Basic realm="a"'
        _, headers, _ = parse(answers.render(429, variables={"RETRY_AFTER": "60"}))
        assert headers["retry-after"] == "60"

    def test_sozu_id_header_is_renamable(self) -> None:
        _, headers, _ = parse(
            Answers(sozu_id_header="X-Req").render(404, variables={"REQUEST_ID": "i"})
        )
        assert headers["x-req"] == "i" and "sozu-id" not in headers
        with pytest.raises(AnswersError):
            Answers(sozu_id_header="bad header")

    def test_unknown_status_or_template_gets_the_missing_template_404(self) -> None:
        answers = Answers()
        code, _, body = parse(answers.render_template("maintenance", variables={"ROUTE": "r"}))
        assert code == 404 and b"maintenance" in body
        assert parse(answers.render(418))[0] == 404


class TestOverrides:
    def test_cluster_overrides_listener_overrides_builtin(self) -> None:
        answers = Answers({"503": "HTTP/1.1 503 Busy\r\n\r\nlistener %CLUSTER_ID"})
        answers.set_cluster_answers("a", {"503": "HTTP/1.1 503 Busy\nX-A: 1\n\ncluster a"})
        assert parse(answers.render(503, "a"))[2] == b"cluster a"
        assert parse(answers.render(503, "b", {"CLUSTER_ID": "b"}))[2] == b"listener b"
        assert parse(answers.render(404, "a"))[0] == 404  # not overridden: built-in
        answers.remove_cluster("a")
        assert parse(answers.render(503, "a", {"CLUSTER_ID": "a"}))[2] == b"listener a"

    def test_custom_template_without_connection_close_keeps_alive(self) -> None:
        answers = Answers({"404": "HTTP/1.1 404 Nope\r\nContent-Length: 999\r\n\r\nnope"})
        assert not answers.closes_connection(404)
        code, headers, body = parse(answers.render(404))
        assert (code, headers["content-length"], body) == (404, "4", b"nope")

    def test_body_only_values_get_the_builtin_head(self) -> None:
        answers = Answers({"503": "<h1>Down for maintenance: %CLUSTER_ID</h1>"})
        code, headers, body = parse(answers.render(503, variables={"CLUSTER_ID": "shop"}))
        assert code == 503 and headers["connection"] == "close"
        assert body == b"<h1>Down for maintenance: shop</h1>"

    def test_file_values_are_read_at_configuration_time(self, tmp_path: Path) -> None:
        page = tmp_path / "503.http"
        page.write_text("HTTP/1.1 503 Unavailable\n\nfrom file\n")
        answers = Answers({"503": f"file://{page}"})
        page.unlink()
        assert parse(answers.render(503))[2] == b"from file\r\n"
        with pytest.raises(AnswersError, match=r"missing\.http"):
            Answers({"503": f"file://{tmp_path}/missing.http"})

    def test_a_bad_cluster_template_leaves_previous_answers_in_place(self) -> None:
        answers = Answers()
        answers.set_cluster_answers("a", {"404": "custom"})
        with pytest.raises(AnswersError):
            answers.set_cluster_answers("a", {"404": "ok", "503": "HTTP/1.1 502 Wrong\r\n\r\n"})
        assert parse(answers.render(404, "a"))[2] == b"custom"
        answers.set_cluster_answers("a", {})
        assert b"No frontend" in parse(answers.render(404, "a"))[2]

    def test_legacy_http_answers_complete_the_answers_map(self) -> None:
        config = HttpListenerConfig(
            address=SocketAddress.parse("127.0.0.1:80"),
            answers={"404": "new"},
            http_answers=CustomHttpAnswers(answer_404="old", answer_503="legacy"),
        )
        assert listener_answer_map(config) == {"404": "new", "503": "legacy"}


class TestTemplateValidation:
    @pytest.mark.parametrize(
        ("template", "reason"),
        [
            ("HTTP/1.1 404 Not Found\r\nX: 1", "blank line"),
            ("HTTP/1.1 200 OK\r\n\r\n", "status is 200"),
            ("HTTP/2 404 Nope\r\n\r\n", "status line"),
            ("HTTP/1.1 404 Nope\r\nbad header\r\n\r\n", "header line"),
            ("HTTP/1.1 404 Nope\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", "twice"),
            ("HTTP/1.1 404 Nope\r\nTransfer-Encoding: chunked\r\n\r\n", "Transfer-Encoding"),
            ("HTTP/1.1 502 Nope\r\nX-M: %MESSAGE\r\n\r\n", "not allowed in a header"),
            ("HTTP/1.1 401 Nope\r\n\r\n%WWW_AUTHENTICATE", "only allowed in a header"),
        ],
    )
    def test_invalid_templates_are_rejected_with_a_reason(self, template: str, reason: str) -> None:
        name = "502" if "502" in template else "401" if "401" in template else "404"
        with pytest.raises(AnswersError, match=reason):
            Answers({name: template})

    def test_body_only_needs_a_known_status(self) -> None:
        with pytest.raises(AnswersError, match="body-only"):
            Answers({"custom": "just a body"})

    def test_variables_not_listed_for_a_status_stay_literal(self) -> None:
        answers = Answers({"404": "HTTP/1.1 404 N\r\n\r\n%ROUTE %CLUSTER_ID %ROUTEX"})
        body = parse(answers.render(404, variables={"ROUTE": "r", "CLUSTER_ID": "c"}))[2]
        assert body == b"r %CLUSTER_ID rX"


class TestSanitising:
    @given(st.text(max_size=200))
    def test_no_variable_value_can_break_the_response_framing(self, hostile: str) -> None:
        answers = Answers()
        variables = {name: hostile for name in ("REQUEST_ID", "ROUTE", "MESSAGE", "PHASE")}
        variables["REDIRECT_LOCATION"] = hostile
        for status in (301, 400):
            response = answers.render(status, variables=variables)
            code, headers, _ = parse(response)
            assert code == status
            head = response.partition(b"\r\n\r\n")[0]
            assert head.count(b"\n") == head.count(b"\r\n") == len(headers)
            values = "".join(headers.values())
            assert not any((ord(c) < 0x20 and c != "\t") or ord(c) == 0x7F for c in values)

    @given(st.text(max_size=200))
    def test_body_values_are_html_escaped(self, hostile: str) -> None:
        answers = Answers({"404": "HTTP/1.1 404 N\r\n\r\n[%ROUTE]"})
        body = parse(answers.render(404, variables={"ROUTE": hostile}))[2]
        assert body == f"[{html.escape(hostile)}]".encode()
