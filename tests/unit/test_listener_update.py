"""The one listener-update merge (command/listener_update.py), field kind by field kind, and
the bug it ended: an update adding a custom 503 made the live worker lose its custom 404 (its
listeners replaced the answer maps) while a worker respawned from main's state kept it."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from dataplane.command.address import SocketAddress
from dataplane.command.listener_update import merge_listener_update
from dataplane.command.messages import (
    AlpnProtocols,
    CustomHttpAnswers,
    HstsConfig,
    HttpListenerConfig,
    HttpsListenerConfig,
    Request,
    TcpListenerConfig,
    UdpListenerConfig,
    UpdateHttpListenerConfig,
    UpdateHttpsListenerConfig,
    UpdateTcpListenerConfig,
    UpdateUdpListenerConfig,
)
from dataplane.command.state import ConfigState
from dataplane.proxy.clusters import HttpProxy
from dataplane.proxy.listener import HttpListener
from dataplane.proxy.tcp.listener import TcpListeners
from dataplane.proxy.tls.listener import HttpsListener, apply_tls
from dataplane.proxy.udp.listener import UdpListeners

ADDRESS = SocketAddress.parse("127.0.0.1:8080")
PUBLIC = SocketAddress.parse("192.0.2.1:80")
ANSWER_404 = "HTTP/1.1 404 Not Found\r\nContent-Length: 10\r\n\r\ncustom 404"
ANSWER_503 = "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 10\r\n\r\ncustom 503"


def test_none_keeps_every_field() -> None:
    config = HttpsListenerConfig(
        address=ADDRESS,
        front_timeout=7,
        answers={"404": ANSWER_404},
        http_answers=CustomHttpAnswers(answer_503="x"),
        alpn_protocols=["http/1.1"],
        hsts=HstsConfig(enabled=True, max_age=5),
        trusted_proxies=["10.0.0.0/8"],
    )
    assert merge_listener_update(config, UpdateHttpsListenerConfig(address=ADDRESS)) == config


def test_scalars_replace() -> None:
    config = HttpListenerConfig(address=ADDRESS, front_timeout=7, sticky_name="S")
    patch = UpdateHttpListenerConfig(
        address=ADDRESS,
        front_timeout=3,
        expect_proxy=True,
        public_address=PUBLIC,
        sozu_id_header="X-Id",
        h2_max_concurrent_streams=10,
    )
    merged = merge_listener_update(config, patch)
    assert (merged.front_timeout, merged.expect_proxy, merged.public_address) == (3, True, PUBLIC)
    assert (merged.sozu_id_header, merged.h2_max_concurrent_streams) == ("X-Id", 10)
    assert (merged.sticky_name, merged.back_timeout) == ("S", 30)  # not in the patch: kept
    assert type(merged) is HttpListenerConfig


def test_answers_merge_key_by_key_and_an_empty_map_keeps_them() -> None:
    config = HttpListenerConfig(address=ADDRESS, answers={"404": ANSWER_404, "503": "old"})
    merged = merge_listener_update(
        config, UpdateHttpListenerConfig(address=ADDRESS, answers={"503": ANSWER_503, "502": "b"})
    )
    assert merged.answers == {"404": ANSWER_404, "503": ANSWER_503, "502": "b"}
    kept = merge_listener_update(config, UpdateHttpListenerConfig(address=ADDRESS, answers={}))
    assert kept.answers == config.answers


def test_http_answers_merge_field_by_field() -> None:
    config = HttpListenerConfig(
        address=ADDRESS, http_answers=CustomHttpAnswers(answer_404="a", answer_503="b")
    )
    patch = UpdateHttpListenerConfig(
        address=ADDRESS,
        http_answers=CustomHttpAnswers(answer_503="B", answer_502="C", answer_301=""),
    )
    merged = merge_listener_update(config, patch).http_answers
    assert merged == CustomHttpAnswers(answer_404="a", answer_503="B", answer_502="C")
    fresh = merge_listener_update(HttpListenerConfig(address=ADDRESS), patch).http_answers
    assert fresh == CustomHttpAnswers(answer_503="B", answer_502="C")


def test_alpn_list_replaces_and_empty_resets() -> None:
    config = HttpsListenerConfig(address=ADDRESS, alpn_protocols=["h2", "http/1.1"])
    patch = UpdateHttpsListenerConfig(address=ADDRESS, alpn_protocols=AlpnProtocols(values=["h2"]))
    assert merge_listener_update(config, patch).alpn_protocols == ["h2"]
    reset = UpdateHttpsListenerConfig(address=ADDRESS, alpn_protocols=AlpnProtocols(values=[]))
    assert merge_listener_update(config, reset).alpn_protocols == []


def test_lists_and_sub_tables_replace_whole() -> None:
    config = HttpsListenerConfig(
        address=ADDRESS,
        trusted_proxies=["10.0.0.0/8"],
        hsts=HstsConfig(enabled=True, max_age=5, preload=True),
    )
    patch = UpdateHttpsListenerConfig(
        address=ADDRESS,
        trusted_proxies=[],  # [] trusts no peer again (None would keep)
        hsts=HstsConfig(enabled=True, max_age=9),
        strict_sni_binding=False,
        disable_http11=True,
    )
    merged = merge_listener_update(config, patch)
    assert merged.trusted_proxies == []
    assert merged.hsts == HstsConfig(enabled=True, max_age=9)  # preload not carried over
    assert (merged.strict_sni_binding, merged.disable_http11) == (False, True)
    assert type(merged) is HttpsListenerConfig


def test_tcp_and_udp_listeners() -> None:
    tcp = TcpListenerConfig(address=ADDRESS, front_timeout=9)
    merged_tcp = merge_listener_update(
        tcp, UpdateTcpListenerConfig(address=ADDRESS, expect_proxy=True, connect_timeout=1)
    )
    assert (merged_tcp.front_timeout, merged_tcp.expect_proxy, merged_tcp.connect_timeout) == (
        9,
        True,
        1,
    )
    udp = UdpListenerConfig(address=ADDRESS, max_flows=5, back_timeout=4)
    merged_udp = merge_listener_update(
        udp, UpdateUdpListenerConfig(address=ADDRESS, max_rx_datagram_size=9000)
    )
    assert (merged_udp.max_flows, merged_udp.back_timeout, merged_udp.max_rx_datagram_size) == (
        5,
        4,
        9000,
    )


def test_the_result_shares_nothing_mutable_with_its_inputs() -> None:
    config = HttpsListenerConfig(
        address=ADDRESS, answers={"404": ANSWER_404}, certificate_chain=["chain"]
    )
    patch = UpdateHttpsListenerConfig(
        address=ADDRESS,
        answers={"503": ANSWER_503},
        trusted_proxies=["10.0.0.0/8"],
        alpn_protocols=AlpnProtocols(values=["http/1.1"]),
    )
    before_config, before_patch = copy.deepcopy(config), copy.deepcopy(patch)
    merged = merge_listener_update(config, patch)
    merged.answers["404"] = "changed"
    merged.certificate_chain.append("more")
    merged.trusted_proxies.append("::1/128")
    merged.alpn_protocols.append("h2")
    assert (config, patch) == (before_config, before_patch)
    again = merge_listener_update(config, patch)
    patch.answers["502"] = "late"
    assert patch.trusted_proxies is not None and patch.alpn_protocols is not None
    patch.trusted_proxies.clear()
    patch.alpn_protocols.values.clear()
    assert "502" not in again.answers
    assert (again.trusted_proxies, again.alpn_protocols) == (["10.0.0.0/8"], ["http/1.1"])


def test_mixed_up_listener_kinds_or_addresses_are_refused() -> None:
    https_patch = UpdateHttpsListenerConfig(address=ADDRESS, strict_sni_binding=True)
    with pytest.raises(TypeError, match="strict_sni_binding"):
        merge_listener_update(HttpListenerConfig(address=ADDRESS), https_patch)
    elsewhere = UpdateHttpListenerConfig(address=PUBLIC, front_timeout=1)
    with pytest.raises(ValueError, match="applied to the listener at"):
        merge_listener_update(HttpListenerConfig(address=ADDRESS), elsewhere)


# -- the bug: the live worker and a respawned one must serve the same answers ----------------


def _served(listener: HttpListener, status: int) -> bytes:
    return listener.answers.render(status, None, {"REQUEST_ID": "r", "MESSAGE": ""})


def _live_and_respawned(
    verb: str, added: HttpListenerConfig, patch: UpdateHttpListenerConfig
) -> tuple[HttpListener, HttpListener]:
    """The listener as a live worker has it after the update, and as a worker started from
    main's state afterwards builds it."""
    state = ConfigState()
    live = HttpProxy(0, 0)
    kind = "https" if isinstance(added, HttpsListenerConfig) else "http"
    for request in (
        Request.of(**{f"add_{kind}_listener": added}),
        Request.of(**{verb: patch}),
    ):
        state.dispatch(request)
        _apply(live, request)
    respawned = HttpProxy(0, 0)
    for request in state.generate_requests():
        _apply(respawned, request)
    return live.listeners[ADDRESS], respawned.listeners[ADDRESS]


def _apply(proxy: HttpProxy, request: Request) -> None:
    proxy.apply(request)  # what a worker does (worker/commands.py)
    apply_tls(proxy, request.verb, request.body)


@pytest.mark.parametrize("kind", ["http", "https"])
def test_an_update_adding_a_custom_503_keeps_the_custom_404_live_and_respawned(
    kind: str,
) -> None:
    added: Any
    if kind == "http":
        added = HttpListenerConfig(address=ADDRESS, answers={"404": ANSWER_404})
        patch: Any = UpdateHttpListenerConfig(address=ADDRESS, answers={"503": ANSWER_503})
    else:
        added = HttpsListenerConfig(address=ADDRESS, answers={"404": ANSWER_404})
        patch = UpdateHttpsListenerConfig(address=ADDRESS, answers={"503": ANSWER_503})
    live, respawned = _live_and_respawned(f"update_{kind}_listener", added, patch)
    assert isinstance(live, HttpsListener) == (kind == "https")
    for listener in (live, respawned):
        assert _served(listener, 404).endswith(b"custom 404")
        assert _served(listener, 503).endswith(b"custom 503")
    assert live.config == respawned.config


def test_deprecated_http_answers_merge_alike_live_and_respawned() -> None:
    added = HttpListenerConfig(
        address=ADDRESS, http_answers=CustomHttpAnswers(answer_404=ANSWER_404)
    )
    patch = UpdateHttpListenerConfig(
        address=ADDRESS, http_answers=CustomHttpAnswers(answer_503=ANSWER_503)
    )
    live, respawned = _live_and_respawned("update_http_listener", added, patch)
    for listener in (live, respawned):
        assert _served(listener, 404).endswith(b"custom 404")
        assert _served(listener, 503).endswith(b"custom 503")


def test_tcp_and_udp_worker_listeners_take_the_same_merge() -> None:
    tcp, state = TcpListeners(), ConfigState()
    tcp_config = TcpListenerConfig(address=ADDRESS, front_timeout=9)
    tcp_patch = UpdateTcpListenerConfig(address=ADDRESS, back_timeout=2)
    state.dispatch(Request.of(add_tcp_listener=tcp_config))
    state.dispatch(Request.of(update_tcp_listener=tcp_patch))
    tcp.add_listener(tcp_config)
    tcp.update_listener(tcp_patch)
    assert tcp.listeners[ADDRESS].config == state.tcp_listeners[ADDRESS]
    udp = UdpListeners()
    udp_config = UdpListenerConfig(address=ADDRESS, max_flows=3)
    udp_patch = UpdateUdpListenerConfig(address=ADDRESS, front_timeout=4)
    state.dispatch(Request.of(add_udp_listener=udp_config))
    state.dispatch(Request.of(update_udp_listener=udp_patch))
    udp.add_listener(udp_config)
    udp.update_listener(udp_patch)
    assert udp.listeners[ADDRESS].config == state.udp_listeners[ADDRESS]
