"""StyleGAN2 generator: config, ops (incl. Winograd), per-layer synthesis steps, generator, sampling, checkpoints.

Owns the network and its parameter tree. May import: ss_jax.runtime, converters (file readers and
format mappings, used by checkpoint.load_generator). Never imports stylespace/, dci/, inversion/,
parser/, toyfaces/ or train/.
"""
