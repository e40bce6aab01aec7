"""The worker's UDP proxy: listener sockets and flow sockets on the worker's loop.

- **In**: an active listener's socket is read in batches (`BATCH` datagrams per wake-up, into
  the listener's one buffer, no allocation per datagram). A datagram larger than the
  listener's `max_rx_datagram_size` is dropped and counted; one from a client without a flow
  opens a flow (`flows.py`) when the listener has a cluster and the cluster a backend, else it
  is dropped (counted by reason, see listener.py). The flow's socket sends it to the backend
  (after a PROXY v2 header when the cluster's `udp.send_proxy_protocol` says so).
- **Out**: a flow's socket is registered with the loop; each reply goes to the flow's client
  from the listener's socket (so from the address the client sent to).
- **Failures**: a backend that refuses (ICMP port unreachable, reported on the flow's socket)
  counts as a connect failure for the circuit breaker (`backend_events`), and the flow closes:
  the client's next datagram opens a flow to a backend that can take it.
- **Figures**: `UdpFigures` (listener.py, names and meanings as sozu's), the
  `udp.active_flows` gauge; bytes per cluster and backend are added when a flow closes, as TCP
  connections' are.

Soft stop closes the listeners and their flows at once (a flow holds no client connection to
drain); an upgrade hands the listener sockets back to main (flows are not migrated, as sozu).
"""

from __future__ import annotations

import errno
import logging
import select
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING

from dataplane.command.address import SocketAddress
from dataplane.command.messages import (
    ListenerType,
    Request,
    UdpAffinityKey,
    UdpClusterConfig,
)
from dataplane.command.scm import Listeners, ScmError
from dataplane.proxy.mux import backend_events
from dataplane.proxy.proxy_protocol.header import v2_header
from dataplane.proxy.udp.flows import Client, Flow
from dataplane.proxy.udp.listener import UdpListener, UdpListeners

if TYPE_CHECKING:
    from dataplane.proxy.clusters import ClusterRuntime
    from dataplane.proxy.mux.host import Host

log = logging.getLogger("dataplane.worker")

EPOLLIN = select.EPOLLIN
BATCH = 64  # datagrams read per wake-up; the rest wake the (level-triggered) loop again
MAX_REPLY = 65535  # a UDP payload is never larger
SCM_PREFIX = "udp:"  # how the worker files main's UDP sockets (a TCP listener may share the port)
_UDP4, _UDP6 = 0x12, 0x22  # PROXY v2 family/transport bytes


def scm_key(address: SocketAddress | str) -> str:
    return f"{SCM_PREFIX}{address}"


def bind_udp(address: SocketAddress) -> socket.socket:
    """A UDP socket for a listener this worker must bind itself (main sent none)."""
    family = socket.AF_INET6 if address.ip.version == 6 else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address.sockaddr())
    except OSError:
        sock.close()
        raise
    return sock


class UdpProxy:
    """UDP listeners and flows of one worker (`loop.udp`)."""

    def __init__(self, loop: Host) -> None:
        self.loop = loop
        self.state = UdpListeners()
        self.figures = self.state.figures
        self.reply_buffer = bytearray(MAX_REPLY)
        self.reply_view = memoryview(self.reply_buffer)
        loop.metrics.counter_sources.append(self.figures.snapshot)
        loop.metrics.histogram_sources.append(self.figures.histograms)
        loop.metrics.gauge_sources.append(self.gauges)

    @property
    def listeners(self) -> dict[SocketAddress, UdpListener]:
        return self.state.listeners

    def gauges(self) -> dict[str, int]:
        return {"udp.active_flows": sum(len(lst.flows) for lst in self.listeners.values())}

    # -- state requests --------------------------------------------------------------------

    def apply(self, request: Request) -> None:
        """Mirror a state request the ConfigState accepted (others are not UDP's)."""
        verb, body = request.verb, request.body
        if verb == "add_udp_listener":
            self.state.add_listener(body)
        elif verb == "update_udp_listener":
            self.state.update_listener(body)
        elif verb == "add_udp_frontend":
            listener = self.listeners[body.address]
            if listener.cluster_id not in (None, body.cluster_id):
                self._close_flows(listener)
            self.state.add_frontend(body)
        elif verb == "remove_udp_frontend":
            if self.state.remove_frontend(body):
                self._close_flows(self.listeners[body.address])
        elif verb == "remove_listener" and body.proxy == ListenerType.UDP:
            self.deactivate(body.address)
            self.listeners.pop(body.address, None)
        elif verb == "remove_backend":
            for listener in self.listeners.values():
                for flow in listener.flows:
                    backend = flow.backend
                    if (
                        flow.cluster_id == body.cluster_id
                        and backend.backend_id == body.backend_id
                        and backend.address == body.address
                    ):
                        self.close(flow)

    # -- listener sockets ------------------------------------------------------------------

    def activate(self, address: SocketAddress, sock: socket.socket | None) -> None:
        """Serve a listener on `sock` (main's, passed over SCM), or bind one."""
        listener = self.listeners.get(address)
        if listener is None:
            raise ScmError(f"no UDP listener at {address}")
        if listener.sock is not None:
            return
        sock = sock or bind_udp(address)
        sock.setblocking(False)
        listener.sock = sock
        self.loop.register(sock.fileno(), self._reader(listener), EPOLLIN)

    def deactivate(self, address: SocketAddress) -> socket.socket | None:
        """Stop serving a listener; its socket is the caller's (to close or hand back)."""
        listener = self.listeners.get(address)
        if listener is None or listener.sock is None:
            return None
        sock, listener.sock = listener.sock, None
        self.loop.unregister(sock.fileno())
        self._close_flows(listener)
        return sock

    def hand_back(self, returned: Listeners) -> None:
        """Upgrade: every active UDP socket joins those returned to main; flows close."""
        for address, listener in self.listeners.items():
            if listener.sock is not None:
                self.loop.unregister(listener.sock.fileno())
                returned.udp[str(address)] = listener.sock
                listener.sock = None
                self._close_flows(listener)

    def close_all(self) -> None:
        """Soft stop or exit: this worker's copy of every UDP socket closes, flows too."""
        for address in list(self.listeners):
            self.deactivate(address)

    # -- datagrams -------------------------------------------------------------------------

    def _reader(self, listener: UdpListener) -> Callable[[int], None]:
        figures = self.figures
        flows = listener.flows

        def on_datagram(_mask: int) -> None:
            sock = listener.sock
            if sock is None:
                return
            receive = sock.recvfrom_into
            view = listener.view
            limit = listener.max_datagram
            for _ in range(BATCH):
                try:
                    count, client = receive(view)
                except (BlockingIOError, InterruptedError):
                    return
                except OSError as error:  # nothing a listener's socket should report: log it
                    log.warning("udp %s: receive failed: %s", listener.config.address, error)
                    return
                if count > limit:
                    figures.dropped_truncated += 1
                    figures.dropped += 1
                    continue
                flow = flows.touch(client)
                if flow is not None and flow.max_requests and flow.requests >= flow.max_requests:
                    self.close(flow)  # its `requests` are used up: the datagram opens a new one
                    flow = None
                if flow is None:
                    flow = self._open_flow(listener, client)
                    if flow is None:
                        figures.dropped += 1  # and its reason, counted by _open_flow
                        continue
                self._forward(flow, view[:count], count)

        return on_datagram

    def _forward(self, flow: Flow, data: memoryview, count: int) -> None:
        flow.front_at = self.loop.now
        flow.requests += 1
        flow.bytes_in += count
        sock = flow.sock
        assert sock is not None
        figures = self.figures
        try:
            header = flow.header
            if header is None:
                sock.send(data)
            else:
                sock.send(header + data)
                if not flow.header_every:
                    flow.header = None
        except (BlockingIOError, InterruptedError):
            figures.dropped += 1  # the socket's send buffer is full: UDP drops
            figures.dropped_wq_full += 1
        except OSError as error:
            figures.dropped += 1
            figures.dropped_send_error += 1
            self._failed(flow, error)
        else:
            figures.datagrams_in += 1
            figures.bytes_in += count

    def flow_reply(self, flow: Flow) -> None:
        """The backend sent something on `flow`'s socket: on to the client."""
        sock = flow.sock
        listener = flow.listener
        if sock is None or listener is None:
            return
        figures = self.figures
        view = self.reply_view
        for _ in range(BATCH):
            try:
                count = sock.recv_into(view)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as error:
                self._failed(flow, error)
                return
            flow.back_at = self.loop.now
            flow.responses += 1
            flow.bytes_out += count
            out = listener.sock
            if out is None:
                figures.dropped += 1
                figures.dropped_unknown_flow += 1  # its listener is gone
                return
            try:
                out.sendto(view[:count], flow.client)
            except (BlockingIOError, InterruptedError):
                figures.dropped += 1
                figures.dropped_wq_full += 1
            except OSError:
                figures.dropped += 1
                figures.dropped_send_error += 1
            else:
                figures.datagrams_out += 1
                figures.bytes_out += count
            if flow.max_responses and flow.responses >= flow.max_responses:
                self.close(flow)  # `responses` reached: done (a DNS-like exchange)
                return

    # -- flows -----------------------------------------------------------------------------

    def _open_flow(self, listener: UdpListener, client: Client) -> Flow | None:
        loop = self.loop
        cluster_id = listener.cluster_id
        cluster = loop.proxy.clusters.get(cluster_id) if cluster_id is not None else None
        if cluster is None:
            self.figures.dropped_no_backend += 1
            return None
        udp = cluster.config.udp
        if udp is not None and udp.affinity_key == UdpAffinityKey.SOURCE_IP_PORT:
            key = f"{client[0]}:{client[1]}".encode()
        else:
            key = client[0].encode()
        backend = cluster.backends.select(loop.now, key=key)
        if backend is None or (
            not backend.healthy and udp is not None and _closed_when_unhealthy(udp)
        ):  # none, or every backend unhealthy with `fail_open = false`
            self.figures.dropped_no_backend += 1
            return None
        for old in listener.flows.make_room():
            self.figures.flows_evicted_max_flows += 1
            self.close(old, listed=False)
        address = backend.address
        family = socket.AF_INET6 if address.ip.version == 6 else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            sock.connect(address.sockaddr())
        except OSError as error:
            sock.close()
            log.warning("udp: backend %s at %s: %s", backend.backend_id, address, error)
            backend_events.connect_failed(loop, cluster, backend)
            self.figures.flows_shed += 1
            self.figures.dropped_shed += 1
            return None
        flow = Flow(self, listener, client, backend, cluster.cluster_id, sock, loop.now)
        if udp is not None:
            flow.max_requests = udp.requests or 0
            flow.max_responses = udp.responses or 0
            if udp.send_proxy_protocol:
                flow.header = _proxy_header(client, listener.config.address)
                flow.header_every = bool(udp.proxy_protocol_every_datagram)
        listener.flows.add(flow)
        backend.active_connections += 1  # a flow counts as a connection (LEAST_LOADED...)
        loop.register(flow.fd, flow.on_reply, EPOLLIN)
        loop.timers.arm(flow, flow.idle_until(listener.front_timeout, listener.back_timeout))
        self.figures.flows_created += 1
        return flow

    def flow_timeout(self, flow: Flow, now: float) -> None:
        listener = flow.listener
        if flow.sock is None or listener is None:
            return
        due = flow.idle_until(listener.front_timeout, listener.back_timeout)
        if now >= due:
            self.close(flow)
        else:
            self.loop.timers.arm(flow, due)  # active since: idle from its last datagram

    def _failed(self, flow: Flow, error: OSError) -> None:
        """The flow's socket reported an error: a refusing backend trips its breaker."""
        if error.errno == errno.ECONNREFUSED:
            cluster: ClusterRuntime | None = self.loop.proxy.clusters.get(flow.cluster_id)
            if cluster is not None:
                backend_events.connect_failed(self.loop, cluster, flow.backend)
        else:
            log.warning("udp flow %s -> %s: %s", flow.client, flow.backend.address, error)
        self.close(flow)

    def close(self, flow: Flow, listed: bool = True) -> None:
        sock = flow.sock
        if sock is None:
            return
        loop = self.loop
        flow.sock = None
        if listed and flow.listener is not None:
            flow.listener.flows.remove(flow)
        loop.timers.cancel(flow)
        loop.forget(flow.fd)
        sock.close()
        self.figures.flow_ended(loop.now - flow.created)
        backend_events.connection_closed(loop, flow.cluster_id, flow.backend)
        if loop.metrics_enabled:
            cluster = loop.metrics.cluster(flow.cluster_id)
            cluster.bytes_in += flow.bytes_in
            cluster.bytes_out += flow.bytes_out
            backend = cluster.backend(flow.backend.backend_id)
            backend.bytes_in += flow.bytes_in
            backend.bytes_out += flow.bytes_out

    def _close_flows(self, listener: UdpListener) -> None:
        for flow in listener.flows:
            self.close(flow)


def _closed_when_unhealthy(udp: UdpClusterConfig) -> bool:
    """`udp.health.fail_open = false`: no flow when every backend is unhealthy (the load
    balancer only hands out an unhealthy one then). sozu reads the key but always fails
    open; pysozu honours it."""
    health = udp.health
    return health is not None and health.fail_open is False


def _proxy_header(client: Client, listener: SocketAddress) -> bytes:
    """A PROXY v2 header for a UDP flow: the client, and the address it sent to."""
    source = (client[0], client[1])
    destination = (str(listener.ip), listener.port)
    family = _UDP6 if ":" in source[0] else _UDP4
    if (":" in destination[0]) != (":" in source[0]):
        return v2_header(None, None, family=0x00)  # mixed families: no address (UNSPEC)
    return v2_header(source, destination, family=family)
