"""Custom error pages, the I/O: a request whose backend answered one of its route's
`custom_errors` codes is served by the error cluster instead (routing/error_pages.py).

The proxy's own request machinery does the work: the backend's response is dropped (its
connection closed, its body never read), and the error request (a GET of /, no body) is
forwarded to the error cluster as the session's (or the stream's) next exchange, whose answer
goes to the client as any response does: streamed, status and headers included, with the
route's response edits. The error cluster's answer is never intercepted again.

Also intercepted: the proxy's own 502, 503 (no backend) and 504 after forwarding, as nginx's
`error_page` serves them. Not intercepted (the original answer stands): an error cluster
that does not exist or has no backend, and an HTTP/2 request whose body has not all arrived
(the stream would have to drop the rest of its body first).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dataplane.proxy.errors import HttpSyntaxError

if TYPE_CHECKING:
    from dataplane.proxy.clusters import ClusterRuntime
    from dataplane.proxy.http1.head import RequestHead
    from dataplane.proxy.listener import HttpListener
    from dataplane.proxy.mux.h2_stream import H2Stream
    from dataplane.proxy.mux.session_fields import SessionFields
    from dataplane.proxy.routing.error_pages import ErrorPages


def _error_request(
    listener: HttpListener, pages: ErrorPages, request: RequestHead, status: int, rid: bytes
) -> tuple[ClusterRuntime, RequestHead] | None:
    cluster = listener.proxy.clusters.get(pages.cluster_id)
    if cluster is None or not len(cluster.backends):
        return None
    head = pages.request_head(request, status, rid.decode("ascii"))
    try:
        return cluster, listener.parser.parse(head)  # (not the listener's cache: unique heads)
    except HttpSyntaxError:
        return None


def intercept(session: SessionFields, pages: ErrorPages, status: int) -> bool:
    """Serve an HTTP/1.1 session's request from the error cluster: False when it cannot be
    (the caller goes on with the response or the answer it had)."""
    request = session.request
    if request is None:
        return False
    found = _error_request(session.listener, pages, request, status, session.request_id)
    if found is None:
        return False
    cluster, error_request = found
    session.error_pages = None  # its answer is the client's, whatever it is
    if not session.request_done:
        session.closing = True  # the rest of the client's body is never read: close after
    session._drop_back()  # the backend's answer is dropped with its connection
    response_edits = session.response_edits
    session.template = None  # the cached template is the client request's, not this one's
    session._forward(error_request, cluster, None)
    session.template = None
    session.response_edits = response_edits
    return True


def intercept_stream(stream: H2Stream, pages: ErrorPages, status: int) -> bool:
    """The same for an HTTP/2 stream (not once it answered, nor while its body arrives)."""
    request = stream.request
    if request is None or stream.responded or not stream.client_done:
        return False
    listener = stream.session.listener
    found = _error_request(listener, pages, request, status, stream.request_id)
    if found is None:
        return False
    cluster, error_request = found
    stream.error_pages = None
    stream._drop_exchange()
    stream.request = error_request
    stream.forward(cluster, None)
    stream.request = request  # the access log names what the client asked
    return True
