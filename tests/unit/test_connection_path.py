"""What a new client connection reuses instead of building again (issue 22): connection
contexts rendered once per peer address (`ConnectionContext.for_port`, the listener's cache),
and the backend connection a `Connection: close` client leaves in the pool for the next one.
Driven on the fake host (fake_host.py): no socket, no sleep."""

from __future__ import annotations

import select

from fake_host import FakeHost, FakeSocket
from test_http_session_core import GET, LISTENER, OK, connect_backend, forwarded, setup

from dataplane.command.address import SocketAddress
from dataplane.command.messages import (
    Request,
    RequestHttpFrontend,
    UpdateHttpListenerConfig,
)
from dataplane.proxy import listener as listener_module
from dataplane.proxy.balancing.load_balancing import Backend
from dataplane.proxy.http1.forwarding import ConnectionContext, TrustedProxies
from dataplane.proxy.mux.backend_pool import IDLE_SECONDS
from dataplane.proxy.mux.route_decision import Forward
from dataplane.proxy.mux.session import HttpSession
from dataplane.proxy.mux.session_fields import CLOSED
from dataplane.proxy.peer_counts import PeerCounts

IN = select.EPOLLIN
CLOSE_GET = b"GET / HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n"


def fields(context: ConnectionContext) -> dict[str, object]:
    """Every public data attribute (from `dir`: compiled by mypyc, the class has no
    `__slots__` to list them)."""
    names = [name for name in dir(context) if not name.startswith("_")]
    values = {name: getattr(context, name) for name in names}
    return {name: value for name, value in values.items() if not callable(value)}


def absent_all(context: ConnectionContext) -> bytes:
    """The forwarding lines a request without its own gets (forward_request joins the three
    parts with the rest of the head)."""
    return context.absent_head + context.port_bytes + context.absent_tail


def test_for_port_is_the_context_a_new_one_would_be() -> None:
    cases = [
        (("10.0.0.9", 5000), ("10.0.0.1", 80), False, True, None),
        (("2001:db8::7", 41000), ("2001:db8::1", 443), True, False, None),
        (("::ffff:10.0.0.1", 1), ("10.0.0.2", 80), False, False, ["10.0.0.0/8"]),
        (("10.0.0.9", 5000), ("10.0.0.1", 80), True, True, ["10.0.0.0/24"]),
    ]
    for peer, public, send, elide, networks in cases:
        trusted = TrustedProxies(networks) if networks is not None else None
        first = ConnectionContext(peer, public, "http", "Sozu-Id", send, elide, trusted)
        for port in (1, 40000, 65535):
            fresh = ConnectionContext(
                (peer[0], port), public, "http", "Sozu-Id", send, elide, trusted
            )
            assert fields(first.for_port(port)) == fields(fresh)
        assert fields(first.for_port(peer[1])) == fields(first)
        public = {"absent_head", "port_bytes", "client_address", "forwarded_line", "trusted"}
        assert public <= set(fields(first))


def test_a_listener_renders_a_peer_once_and_each_connection_its_port() -> None:
    host, _session, _client = setup()
    listener = host.proxy.listeners[LISTENER]
    first = listener.connection_context(("198.51.100.4", 1000))
    second = listener.connection_context(("198.51.100.4", 2000))
    assert first is not second
    assert first.client_address == "198.51.100.4:1000"
    assert second.client_address == "198.51.100.4:2000"
    assert b'for="198.51.100.4:2000"' in absent_all(second)
    assert second.real_ip == b""  # send_x_real_ip is off


def test_a_listener_update_reaches_the_next_connection_from_a_known_peer() -> None:
    host, _session, _client = setup()
    listener = host.proxy.listeners[LISTENER]
    before = listener.connection_context(("198.51.100.4", 1000))
    assert b"X-Real-IP" not in absent_all(before)
    patch = UpdateHttpListenerConfig(address=LISTENER, send_x_real_ip=True)
    host.proxy.apply(Request.of(update_http_listener=patch))
    after = listener.connection_context(("198.51.100.4", 1001))
    assert b"\r\nX-Real-IP: 198.51.100.4" in absent_all(after)
    assert b"X-Real-IP" not in absent_all(before)  # an open connection keeps what it got


def test_the_peer_cache_is_bounded(monkeypatch: object) -> None:
    host, _session, _client = setup()
    listener = host.proxy.listeners[LISTENER]
    monkeypatch.setattr(listener_module, "PEER_CACHE_SIZE", 8)  # type: ignore[attr-defined]
    for n in range(100):
        listener.connection_context((f"10.1.0.{n}", 1000))
        assert len(listener._peer_contexts) <= 8


def close_exchange(host: FakeHost, client: FakeSocket) -> None:
    client.incoming += CLOSE_GET
    host.fire(client.fd, IN)


def test_a_closing_client_leaves_its_backend_connection_to_the_next_one() -> None:
    """`Connection: close` from the client ends the client connection, not the backend's:
    the next new connection (from any address) reuses it, with no connect."""
    host, session, client = setup()
    close_exchange(host, client)
    back = connect_backend(host)
    back.incoming += OK
    host.fire(back.fd, IN)
    assert client.take().startswith(b"HTTP/1.1 200 OK")
    assert session.phase == CLOSED and client.closed
    assert not back.closed and len(host.pool) == 1
    listener = host.proxy.listeners[LISTENER]
    for n in range(3):
        other = FakeSocket(50 + n)
        next_session = HttpSession(host, listener, other, (f"192.0.2.{n}", 4000 + n))
        host.sessions.add(next_session)
        close_exchange(host, other)
        assert back.take().startswith(b"GET / HTTP/1.1")
        back.incoming += OK
        host.fire(back.fd, IN)
        assert other.take().startswith(b"HTTP/1.1 200 OK") and other.closed
    assert len(host.backend_sockets) == 1 and host.counters.backend_connections == 1
    assert len(host.pool) == 1


def test_a_backend_replaced_at_the_same_address_never_gets_the_old_ones_connections() -> None:
    host, _session, _client = setup()
    address = SocketAddress.parse("127.0.0.1:9001")
    old, new = Backend("b1", address), Backend("b1", address)
    conn = host.pool.open(old, "app")
    conn.connected = True
    host.register(conn.fd, lambda events: None, IN)
    host.pool.give_back(conn)
    assert host.pool.take(new, "app") is None
    assert host.pool.take(old, "app") is conn
    host.pool.give_back(conn)
    old.removed = True
    host.pool.discard_backend(old)
    assert len(host.pool) == 0 and host.backend_sockets[-1].closed


def test_a_connection_refused_by_one_backend_tries_the_other_then_forgets() -> None:
    """`failed` is per request: the next request may try the refusing backend again."""
    host, session, client = setup(backends=2)
    host.refused.add(9001)
    for _ in range(2):
        client.incoming += b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n"
        host.fire(client.fd, IN)
        assert session.failed in ({"b1"}, frozenset())  # the first request; the second
        back = host.backend_sockets[-1]
        assert back.address.port == 9002
        if back.connected_to is not None and host.masks.get(back.fd) == select.EPOLLOUT:
            host.fire(back.fd, select.EPOLLOUT)
        back.incoming += OK
        host.fire(back.fd, IN)
        assert client.take().startswith(b"HTTP/1.1 200 OK")
    assert [sock.address.port for sock in host.backend_sockets] == [9001, 9002]  # b1 refused
    assert host.counters.backend_connections == 1


def test_a_pooled_connection_in_use_outlives_its_old_idle_timer() -> None:
    """Taking a connection from the pool leaves its idle timer filed (no wheel work per new
    client): when that timer comes, a connection in use is left alone; one still idle goes."""
    host, _session, _client = setup()
    backend = Backend("b1", SocketAddress.parse("127.0.0.1:9001"))
    busy, idle = host.pool.open(backend, "app"), host.pool.open(backend, "app")
    for conn in (busy, idle):
        conn.connected = True
        host.register(conn.fd, lambda events: None, IN)
        host.pool.give_back(conn)
    assert host.pool.take(backend, "app") is idle  # the last returned
    host.advance(IDLE_SECONDS + 2)  # both idle deadlines passed
    assert not host.backend_sockets[-1].closed and host.pool.take(backend, "app") is None
    assert host.backend_sockets[-2].closed  # `busy` stayed idle in the pool
    host.pool.give_back(idle)
    host.advance(IDLE_SECONDS - 1)
    assert host.pool.take(backend, "app") is idle  # its new idle deadline not reached
    host.pool.give_back(idle)
    host.advance(IDLE_SECONDS + 2)
    assert host.backend_sockets[-1].closed and len(host.pool) == 0


def test_a_head_is_forwarded_whole_first_then_from_its_template() -> None:
    """A head's first request on a connection is rendered with its id (no template); the
    same head again uses the template made then; another head starts over. Each forwarded
    head is exactly what a fresh rendering would be."""
    host, session, client = setup()
    other = b"GET /other HTTP/1.1\r\nHost: example.com\r\n\r\n"
    sequence = [GET, GET, GET, other, other, GET]
    back = None
    for number, head in enumerate(sequence, start=1):
        client.incoming += head
        host.fire(client.fd, IN)
        if back is None:
            back = connect_backend(host)
        line, _, rest = head.partition(b"\r\n")
        want = forwarded(line, b"\r\n" + rest[: -len(b"\r\n\r\n")], b"REQ-%d" % number)
        assert back.take() == want
        if number == 1 or head != sequence[number - 2]:
            assert session.template is not None and not session.template  # NO_TEMPLATE
        else:
            assert session.template is not None and len(session.template) == 3
        back.incoming += OK
        host.fire(back.fd, IN)
        assert client.take().startswith(b"HTTP/1.1 200 OK")


def test_per_ip_counts_live_in_one_table_the_listeners_share() -> None:
    host, session, client = setup()
    listener = host.proxy.listeners[LISTENER]
    peers = host.proxy.peers
    assert listener.peers is peers
    client.incoming += CLOSE_GET
    host.fire(client.fd, IN)
    assert peers.count("203.0.113.9", "app") == 1
    assert host.proxy.peer_count(("203.0.113.9", "app")) == 1
    back = connect_backend(host)
    back.incoming += OK
    host.fire(back.fd, IN)
    assert session.phase == CLOSED and peers.count("203.0.113.9", "app") == 0
    assert len(peers) == 0


def test_peer_counts_count_and_forget() -> None:
    peers = PeerCounts()
    peers.acquire("10.0.0.1", "app")
    peers.acquire("10.0.0.1", "app")
    peers.acquire("10.0.0.1", "other")
    assert peers.count("10.0.0.1", "app") == 2 and peers.count("10.0.0.1", "other") == 1
    assert peers.count("10.0.0.2", "app") == 0 and len(peers) == 2
    peers.release("10.0.0.1", "other")
    assert peers.count("10.0.0.1", "other") == 0 and len(peers) == 1
    peers.release("10.0.0.1", "app")
    peers.release("10.0.0.1", "app")
    assert peers.count("10.0.0.1", "app") == 0 and len(peers) == 0
    assert peers.addresses() == 1  # its zeros kept for its next connection, until a prune
    peers.prune(force=True)
    assert peers.addresses() == 0
    peers.release("10.0.0.1", "app")  # (never expected) stays forgotten, never negative
    peers.acquire("10.0.0.1", "app")
    peers.release("10.0.0.1", "nope")  # another cluster's release leaves this one's count
    assert peers.count("10.0.0.1", "app") == 1 and len(peers) == 1
    peers.acquire("10.0.0.1", "other")
    peers.release("10.0.0.1", "nope")
    assert peers.count("10.0.0.1", "other") == 1 and len(peers) == 2


def test_a_plain_route_decision_is_made_once_per_cluster() -> None:
    """Without edits or a body limit, `route_request` answers the cluster's own `Forward`."""
    host, _session, _client = setup()
    cluster = host.proxy.clusters["app"]
    assert cluster.plain_forward is None
    for n in range(2):
        other = FakeSocket(60 + n)
        session = HttpSession(host, host.proxy.listeners[LISTENER], other, ("192.0.2.1", n + 1))
        host.sessions.add(session)
        close_exchange(host, other)
        assert session.routed is cluster
    decision = cluster.plain_forward
    assert isinstance(decision, Forward) and tuple(decision) == (cluster, None, None)


def test_a_new_connection_reuses_the_listeners_latest_head_with_its_own_context() -> None:
    """A new connection starts with the listener's latest head as its previous one: the same
    head from another client is taken without a search or a parse (the very RequestHead), and
    still forwarded with this connection's own address; another head is parsed as usual."""
    host, session, client = setup()
    listener = host.proxy.listeners[LISTENER]
    close_exchange(host, client)
    back = connect_backend(host)
    assert listener.recent_head == CLOSE_GET
    first_request = listener.recent_request
    assert first_request is not None and session.request is first_request
    back.take()
    back.incoming += OK
    host.fire(back.fd, IN)
    other = FakeSocket(60)
    again = HttpSession(host, listener, other, ("203.0.113.5", 4321))
    host.sessions.add(again)
    assert again.last_head == CLOSE_GET and again.last_request is first_request
    close_exchange(host, other)
    assert again.request is first_request
    sent = back.take()
    assert sent.startswith(b"GET / HTTP/1.1\r\n")
    assert b'for="203.0.113.5:4321"' in sent and b"X-Forwarded-For: 203.0.113.5" in sent
    back.incoming += OK
    host.fire(back.fd, IN)
    assert other.take().startswith(b"HTTP/1.1 200 OK")
    # A different head on the next connection: parsed, and remembered in its turn.
    third = FakeSocket(61)
    different = HttpSession(host, listener, third, ("203.0.113.6", 999))
    host.sessions.add(different)
    third.incoming += b"GET /other HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n"
    host.fire(third.fd, IN)
    assert different.request is not first_request
    assert different.request is not None and different.request.path == "/other"
    assert listener.recent_request is different.request
    assert back.take().startswith(b"GET /other HTTP/1.1\r\n")


def test_peer_counts_prune_their_zeros_once_the_table_has_grown() -> None:
    """Zeros stay (an address's next connection reuses its entry), and the tick's prune drops
    them only past PRUNE_FLOOR addresses or twice what the last prune kept: bounded."""
    from dataplane.proxy.peer_counts import PRUNE_FLOOR

    peers = PeerCounts()
    for n in range(PRUNE_FLOOR - 2):
        peers.acquire(f"10.2.{n // 256}.{n % 256}", "app")
        peers.release(f"10.2.{n // 256}.{n % 256}", "app")
    peers.acquire("192.0.2.1", "app")  # one that stays open
    peers.prune()
    assert peers.addresses() == PRUNE_FLOOR - 1  # not yet
    peers.acquire("192.0.2.2", "app")
    peers.release("192.0.2.2", "app")
    peers.prune()
    assert peers.addresses() == 1 and len(peers) == 1
    assert peers.count("192.0.2.1", "app") == 1 and peers.count("10.2.0.1", "app") == 0
    peers.acquire("10.2.0.1", "app")  # a pruned address counts again from zero
    assert peers.count("10.2.0.1", "app") == 1 and len(peers) == 2


def test_a_head_remembers_its_route_until_a_frontend_comes_or_goes() -> None:
    """The parsed head carries its routing decision (no lookup for a head seen before), and a
    frontend removed or added makes the next request with that very head routed again."""
    host, _session, client = setup()
    listener = host.proxy.listeners[LISTENER]
    client.incoming += GET
    host.fire(client.fd, IN)
    back = connect_backend(host)
    assert back.take().startswith(b"GET /path?q=1 HTTP/1.1")
    back.incoming += OK
    host.fire(back.fd, IN)
    assert client.take().startswith(b"HTTP/1.1 200 OK")
    request = listener.recent_request
    assert request is not None and request.decided_by is listener.routes_version
    front = RequestHttpFrontend(address=LISTENER, hostname="example.com", cluster_id="app")
    host.proxy.apply(Request.of(remove_http_frontend=front))
    assert request.decided_by is not listener.routes_version
    client.incoming += GET  # the same bytes: the same parsed head, its decision now stale
    host.fire(client.fd, IN)
    assert client.take().startswith(b"HTTP/1.1 404 ")
    host.proxy.apply(Request.of(add_http_frontend=front))
    other = FakeSocket(70)  # (the 404 ended that connection) a new one sends the same head
    again = HttpSession(host, listener, other, ("203.0.113.7", 7000))
    host.sessions.add(again)
    other.incoming += GET
    host.fire(other.fd, IN)
    assert again.request is request and request.decided_by is listener.routes_version
    assert connect_backend(host).take().startswith(b"GET /path?q=1 HTTP/1.1")
