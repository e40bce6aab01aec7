"""TCP listeners and the TCP session that relays bytes to a backend."""
