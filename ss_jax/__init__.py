"""ss-jax: StyleGAN2 and StyleSpace analysis in JAX.

  g = ss_jax.load_generator(path)      # converted dir, NVIDIA .pkl (PyTorch/TF), rosinality .pt
  ws = g.mapping(z, c=None, psi=1.0)   # (N, num_ws, w_dim)
  s = g.styles(ws)                     # tuple of (N, C_l), generator order
  x = g.synthesis(s)                   # (N, H, W, C) NHWC float32
  maps = ss_jax.gradient_maps(g, s)    # (N, C_conv, 32, 32) float32

The parts (one subpackage each; see README "Architecture"): stylegan2/ (the network),
stylespace/ (the analysis), dci/, inversion/, parser/ (BiSeNet), toyfaces/ (the synthetic world
and its evaluation harness), train/, runtime/ (devices, processes, jobs, images); converters/
(a sibling package) reads checkpoint files.
"""

from ss_jax.inversion.optimise import invert
from ss_jax.stylegan2.checkpoint import load_generator, save_generator
from ss_jax.stylegan2.config import GeneratorConfig, StyleLayer, nvidia_channels, style_layout
from ss_jax.stylegan2.generator import Generator, config_f, flatten_styles, unflatten_styles
from ss_jax.stylegan2.sampling import styles_from_seeds
from ss_jax.stylespace.attribute_channels import find_channels
from ss_jax.stylespace.gradmaps.api import gradient_maps, jacobian
from ss_jax.stylespace.manipulate import edited_images
from ss_jax.stylespace.stats import population_stats

__all__ = [
  "Generator",
  "GeneratorConfig",
  "StyleLayer",
  "config_f",
  "edited_images",
  "find_channels",
  "flatten_styles",
  "gradient_maps",
  "invert",
  "jacobian",
  "load_generator",
  "nvidia_channels",
  "population_stats",
  "save_generator",
  "style_layout",
  "styles_from_seeds",
  "unflatten_styles",
]
