"""Tiny random generators for tests, built with numpy (eager jax init is slow on CPU)."""

import jax
import numpy as np

from ss_jax.stylegan2.generator import Generator, GeneratorConfig, init_params

TINY = GeneratorConfig(z_dim=16, w_dim=16, img_resolution=16, channels=(16, 16, 8), mapping_layers=2)


def tiny_generator(seed=0, cfg=TINY):
  """N(0,1) weights of cfg's shapes, with mapping weights and affine biases as the official init."""
  shapes = jax.eval_shape(lambda: init_params(cfg, jax.random.PRNGKey(0)))
  rng = np.random.RandomState(seed)
  params, buffers = jax.tree.map(lambda s: np.asarray(rng.randn(*s.shape), np.float32), shapes)
  for fc in params["mapping"]["fc"]:
    fc["w"] = fc["w"] / cfg.mapping_lr  # undo the runtime lr gain so w varies with z
  for p in params["synthesis"]["layers"]:
    p["affine_b"] = np.ones_like(p["affine_b"])  # S ~1-centred, as the official init
  return Generator(params, buffers, cfg)


TINY_ENCODER = dict(widths=(8, 16, 16), head_channels=8, feature_dim=32)


def tiny_encoder_config(g):
  """A small ss_jax.inversion.encoder.EncoderConfig for generator g (test speed, not quality)."""
  from ss_jax.inversion import encoder  # pylint: disable=g-import-not-at-top

  return encoder.EncoderConfig.for_generator(g, **TINY_ENCODER)
