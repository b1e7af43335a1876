"""Latents from seeds and batched generation."""
import re

import jax
import numpy as np

from ss_jax.generator import Generator


def parse_seeds(spec):
  """'0-7' / '1,4,10-12' -> list of ints (ranges inclusive)."""
  seeds = []
  for part in str(spec).split(","):
    part = part.strip()
    m = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
    if not m:
      raise ValueError(f"bad seed spec {spec!r}: use e.g. '0-7' or '1,4,10-12'")
    a, b = int(m.group(1)), int(m.group(2) or m.group(1))
    if b < a:
      raise ValueError(f"bad seed range {part!r}: end before start")
    if b > 2**32 - 1:
      raise ValueError(f"seed {b} out of range: seeds are 0..{2**32 - 1}")
    seeds.extend(range(a, b + 1))
  return seeds


def z_from_seeds(seeds, z_dim):
  """(N, z_dim) float32, row i = RandomState(seeds[i]).randn(z_dim) (the official scripts' convention)."""
  return np.stack([np.random.RandomState(s).randn(z_dim) for s in seeds]).astype(np.float32)


def one_hot(labels, c_dim):
  """(N,) int labels -> (N, c_dim) float32; None when c_dim == 0."""
  if c_dim == 0:
    return None
  labels = np.asarray(labels)
  if labels.min() < 0 or labels.max() >= c_dim:
    raise ValueError(f"class labels must be in [0, {c_dim}), got {labels.min()}..{labels.max()}")
  return np.eye(c_dim, dtype=np.float32)[labels]


@jax.jit
def _generate(g: Generator, z, c, psi):
  return g.synthesis(g.styles(g.mapping(z, c, psi)), noise_mode="const")


def generate(g: Generator, z, c=None, psi=1.0, batch_size=16):
  """z (N, z_dim) [, c (N, c_dim)] -> images (N, H, W, C) float32 numpy, in fixed-size batches."""
  out = []
  n = len(z)
  for i in range(0, n, batch_size):
    zb = z[i:i + batch_size]
    cb = None if c is None else c[i:i + batch_size]
    pad = batch_size - len(zb) if n > batch_size else 0  # keep one compiled shape
    if pad:
      zb = np.concatenate([zb, np.zeros((pad,) + zb.shape[1:], zb.dtype)])
      cb = None if cb is None else np.concatenate([cb, np.zeros((pad,) + cb.shape[1:], cb.dtype)])
    x = np.asarray(_generate(g, zb, cb, np.float32(psi)))
    out.append(x[:len(x) - pad])
  return np.concatenate(out)
