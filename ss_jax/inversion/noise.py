"""Per-layer noise maps optimised next to the code during inversion (StyleGAN2 projector recipe):
initial maps, the multi-scale autocorrelation regulariser, renormalisation, per-image buffers."""

import jax
import jax.numpy as jnp
import numpy as np


def noise_regularizer(maps):
  """Per-image multi-scale autocorrelation penalty of noise maps: list of (N, R, R) -> (N,).

  For each map and each scale (the map, then repeated 2x2 average pooling while
  the side is > 8): the squared mean of v * roll(v, 1) along x plus the same
  along y (circular shifts). White noise scores ~ 2 / R^2 per scale, a smooth or
  constant map ~ 2 * mean(v^2)^2.
  """
  total = 0.0
  for v in maps:
    v = jnp.asarray(v, jnp.float32)
    while True:
      total = total + jnp.square(jnp.mean(v * jnp.roll(v, 1, axis=2), axis=(1, 2)))
      total = total + jnp.square(jnp.mean(v * jnp.roll(v, 1, axis=1), axis=(1, 2)))
      if v.shape[1] <= 8:
        break
      n, r = v.shape[0], v.shape[1]
      v = v.reshape(n, r // 2, 2, r // 2, 2).mean(axis=(2, 4))
  return total


def normalize_noise(v):
  """(N, R, R) -> per image zero mean, unit mean square."""
  v = v - jnp.mean(v, axis=(1, 2), keepdims=True)
  return v * jax.lax.rsqrt(jnp.mean(jnp.square(v), axis=(1, 2), keepdims=True))


def start_noise(g, n):
  """The checkpoint's const noise maps, one copy per image: list of (n, R, R) float32 numpy."""
  return [np.repeat(np.asarray(v, np.float32)[None], n, axis=0) for v in g.buffers["noise"]]


def with_noise(g, noise, i):
  """g whose const noise buffers are image i's maps (noise: list of (N, R, R)); g if noise is None."""
  if noise is None:
    return g
  return g.replace(buffers=dict(g.buffers, noise=[jnp.asarray(v[i]) for v in noise]))
