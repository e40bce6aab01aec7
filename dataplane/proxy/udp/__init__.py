"""UDP proxying as sozu 2.1 does it: UDP listeners, their frontends, and flows.

`listener.py` mirrors the state (listeners, frontends) and holds the figures, `flows.py` is a
flow (a client address pinned to one backend through its own connected socket) and the bounded
table of them, `proxy.py` is what the worker loop registers: datagrams in, replies out.
"""
