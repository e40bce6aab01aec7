"""Which cluster a request goes to: the router (hosts, paths, methods), its rules, and what a
matched route asks (redirect, deny, auth, rewrite, header edits, HSTS)."""
