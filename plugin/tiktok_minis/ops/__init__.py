"""What an operator reads: Prometheus metrics (``metrics``), JSON log lines (``logs``) and the
liveness and readiness checks (``health``)."""
