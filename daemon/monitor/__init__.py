"""Watching the running daemon: the HTTP listener, health checks, Prometheus metrics, systemd notify."""
