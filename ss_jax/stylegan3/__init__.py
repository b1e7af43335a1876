"""StyleGAN3 (alias-free, T and R) generators with explicit style inputs.

g = ss_jax.load_generator("stylegan3-snapshot.pkl")   # or a converted directory
ws = g.mapping(z, c, psi=0.7)
s = g.styles(ws)              # input (4 values), L0 ... L{n-1}, toRGB
x = g.synthesis(s, input_transform=m)                  # (N, R, R, C) NHWC
"""

from ss_jax.stylegan3.config import StyleGAN3Config, StyleGAN3Layer, config_r, config_t, layer_table, style_layout
from ss_jax.stylegan3.generator import StyleGAN3Generator, is_stylegan3

__all__ = [
  "StyleGAN3Config",
  "StyleGAN3Generator",
  "StyleGAN3Layer",
  "config_r",
  "config_t",
  "is_stylegan3",
  "layer_table",
  "style_layout",
]
