"""Checkpoint converters: `python -m converters SRC OUT`."""
