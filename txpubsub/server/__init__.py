"""Wiring for twistd: options, listeners, lifecycle and TLS."""
