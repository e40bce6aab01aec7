"""Backends of a cluster and the choice between them: load-balancing algorithms, a backend's
health (circuit breaker), hashing."""
