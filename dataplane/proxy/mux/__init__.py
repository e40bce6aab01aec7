"""Connections and their host: the `Host` interface a connection uses of its worker, the HTTP
session (client side, backend side, flow control) and the backend connections with their pool
and events."""
