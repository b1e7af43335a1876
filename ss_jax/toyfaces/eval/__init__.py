"""Evaluation harness on the ToyFaces world: generator quality and the inversion/editing table.

Sits above everything: may import the world (ss_jax.toyfaces), ss_jax.stylegan2, ss_jax.stylespace.channels,
ss_jax.inversion.optimise, ss_jax.runtime. Nothing in the library imports it.
"""
