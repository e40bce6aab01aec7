"""HTTPS listeners: certificates and SNI, TLS contexts and policy (ALPN, strict SNI),
handshakes and the HTTPS session."""
