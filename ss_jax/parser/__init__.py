"""Face parsing: BiSeNet in JAX (bisenet) and the batched, sharded parser (face_parser).

May import: ss_jax.runtime, converters (BiSeNet .pth reading), ss_jax.stylespace.segmentation (to
register itself as the 'bisenet' segmenter).
"""
