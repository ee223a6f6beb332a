"""Runnable example services: start one with ``python -m examples.<name>``."""
