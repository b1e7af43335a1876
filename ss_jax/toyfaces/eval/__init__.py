"""Evaluation harness on the ToyFaces world: generator quality and the inversion/editing table.

quality (generator vs renders), inversion (image sets, inversion methods, the edit plan),
edit_scores (what an edit of a reconstruction changes: target, leaks, outside its region),
inversion_table (tables and figure), experiment (the pipeline of experiments.inversion_table).

Sits above everything: may import the world (ss_jax.toyfaces), ss_jax.stylegan2, ss_jax.stylespace,
ss_jax.inversion, ss_jax.runtime. Nothing in the library imports it.
"""
