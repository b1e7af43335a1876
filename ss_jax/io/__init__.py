"""Torch- and TensorFlow-free readers for checkpoint files (untrusted input)."""
