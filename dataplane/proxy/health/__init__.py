"""Active health checks (sozu's `health_check` per cluster): `verdict.py` is the sans-IO part
(thresholds, the HTTP probe's request and answer), `probe.py` one probe's socket, and
`checks.py` the driver the worker loop ticks."""
