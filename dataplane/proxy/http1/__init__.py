"""HTTP/1.1 sans-IO: request and response heads, bodies (length, chunked), request paths, and
the heads the proxy forwards. Bytes in, values out; no sockets."""
