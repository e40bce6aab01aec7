"""Default answers: the HTTP responses the proxy sends on its own, and their built-in
templates."""
