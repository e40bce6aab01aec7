"""The PROXY protocol: the header read sans-IO (v1/v2) and the reader that waits for it before
a connection starts."""
