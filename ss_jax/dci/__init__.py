"""DCI (disentanglement, completeness, informativeness): metric, regressors, code/attribute sampling
jobs, results (heat maps, JSON).

May import: ss_jax.stylegan2, ss_jax.stylespace.channels, ss_jax.runtime; the ToyFaces attribute function is
loaded lazily through the toyfaces package only when asked for.
"""
