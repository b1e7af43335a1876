"""The codes an inversion optimises: W (N, w_dim), W+ (N, num_ws, w_dim) or flat S (N, C).

`code_shape` / `code_to_styles` / `start_code` give a space's per-image shape, its flat S and
its start (w_avg, or styles(w_avg)); `latent_spread` measures the spread of the generator's
codes (NVIDIA's projector's scalar for W / W+, per-channel population stds for S) that scales
the optimiser's latent noise and the S parameterisation (ss_jax.inversion.optimise).
"""

import jax.numpy as jnp
import numpy as np

from ss_jax.runtime import distributed
from ss_jax.stylegan2 import sampling
from ss_jax.stylegan2.generator import flatten_styles
from ss_jax.stylespace import stats

SPACES = ("w", "wplus", "s")
SPREAD_SAMPLES = 10_000
SPREAD_SEED = 123


def check_space(space):
  if space not in SPACES:
    raise ValueError(f"space must be one of {SPACES}, got {space!r}")


def code_shape(g, space):
  """Per-image shape of a code: (w_dim,), (num_ws, w_dim) or (num_style_channels,)."""
  check_space(space)
  cfg = g.config
  return {"w": (cfg.w_dim,), "wplus": (cfg.num_ws, cfg.w_dim), "s": (g.num_style_channels,)}[space]


def code_to_styles(g, space, code):
  """A code of `space` (N, *code_shape) -> flat S (N, num_style_channels) float32 (jittable)."""
  check_space(space)
  if space == "s" and isinstance(code, (tuple, list)):
    code = flatten_styles([jnp.asarray(b, jnp.float32) for b in code])
  code = jnp.asarray(code, jnp.float32)
  want = code_shape(g, space)
  if code.ndim != 1 + len(want) or code.shape[1:] != want:
    raise ValueError(f"a code of space {space!r} must have shape (N, {', '.join(map(str, want))}), got {code.shape}")
  if space == "s":
    return code
  if space == "w":
    code = jnp.broadcast_to(code[:, None], (code.shape[0], g.config.num_ws, g.config.w_dim))
  return flatten_styles(g.styles(code))


def start_code(g, space, n):
  """(n, *code_shape) float32 numpy: w_avg (W), w_avg in every row (W+), styles(w_avg) (S)."""
  w_avg = np.asarray(g.w_avg, np.float32)
  if space == "w":
    code = w_avg[None]
  elif space == "wplus":
    code = np.broadcast_to(w_avg, (1, g.config.num_ws, g.config.w_dim))
  else:
    code = np.asarray(code_to_styles(g, "w", w_avg[None]))
  return np.repeat(np.asarray(code, np.float32), n, axis=0)


def _spread_rows(g, z, c):
  """(b, z_dim), (b, c_dim) -> (b, 1 + C): |w - w_avg|^2 and flat S of each sample (psi 1)."""
  ws = g.mapping(z, c)
  sq = jnp.sum(jnp.square(ws[:, 0] - g.w_avg), axis=1, keepdims=True)
  return jnp.concatenate([sq, flatten_styles(g.styles(ws))], axis=1)


def latent_spread(g, num_samples=SPREAD_SAMPLES, seed=SPREAD_SEED, batch_size=1000, mesh=None):
  """Spread of the generator's codes from z ~ RandomState(seed).randn(num_samples, z_dim), psi 1.

  Conditional models use class (i % c_dim) for sample i. mesh: default `distributed.local_mesh()`.

  Returns:
    dict(w_std: float, sqrt of the mean of |w - w_avg|^2 around g.w_avg (NVIDIA's
    projector's scalar), s_mean: (C,) float64, s_std: (C,) float64 population
    std (ddof 0) of flat S, num_samples, seed).
  """
  z = np.random.RandomState(seed).randn(num_samples, g.config.z_dim).astype(np.float32)
  c = sampling.class_labels(g.config.c_dim, range(num_samples), None)
  acc = stats.empty_moments(1 + g.num_style_channels)
  for rows in distributed.map_batches(_spread_rows, g, (z, c), (), batch_size, mesh or distributed.local_mesh()):
    acc = stats.merge_moments(acc, stats.batch_moments(rows))
  n, mean, m2 = acc
  return {
    "w_std": float(np.sqrt(mean[0])),
    "s_mean": mean[1:],
    "s_std": np.sqrt(m2[1:] / n),
    "num_samples": int(num_samples),
    "seed": int(seed),
  }
