"""ss-jax: StyleGAN2 and StyleSpace analysis in JAX.

  g = ss_jax.load_generator(path)      # converted dir, NVIDIA .pkl (PyTorch/TF), rosinality .pt
  ws = g.mapping(z, c=None, psi=1.0)   # (N, num_ws, w_dim)
  s = g.styles(ws)                     # tuple of (N, C_l), generator order
  x = g.synthesis(s)                   # (N, H, W, C) NHWC float32
"""
from ss_jax.checkpoint import load_generator, save_generator
from ss_jax.config import GeneratorConfig, StyleLayer, nvidia_channels, style_layout
from ss_jax.generator import Generator, config_f, flatten_styles, unflatten_styles

__all__ = ["Generator", "GeneratorConfig", "StyleLayer", "config_f", "flatten_styles",
           "load_generator", "nvidia_channels", "save_generator", "style_layout", "unflatten_styles"]
