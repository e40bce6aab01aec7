"""pysozu's side-by-side load benchmark against nginx and HAProxy (stdlib only)."""
