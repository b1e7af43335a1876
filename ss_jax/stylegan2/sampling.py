"""Latents from seeds, batched generation, and S codes of seeds / W+ codes on a device mesh.

Seed convention: z of seed i = RandomState(i).randn(z_dim) (the official scripts'); conditional
models get class label seed % c_dim (balanced) or one fixed class_idx.
"""

import functools

import jax
import numpy as np

from ss_jax.runtime import distributed
from ss_jax.stylegan2.generator import Generator, flatten_styles


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
    zb = z[i : i + batch_size]
    cb = None if c is None else c[i : i + batch_size]
    pad = batch_size - len(zb) if n > batch_size else 0  # keep one compiled shape
    if pad:
      zb = np.concatenate([zb, np.zeros((pad,) + zb.shape[1:], zb.dtype)])
      cb = None if cb is None else np.concatenate([cb, np.zeros((pad,) + cb.shape[1:], cb.dtype)])
    x = np.asarray(_generate(g, zb, cb, np.float32(psi)))
    out.append(x[: len(x) - pad])
  return np.concatenate(out)


def _z_to_s(g, z, c, psi):
  return flatten_styles(g.styles(g.mapping(z, c, psi)))


def _ws_to_s(g, ws):
  return flatten_styles(g.styles(ws))


def class_labels(c_dim, seeds, class_idx):
  """(N, c_dim) one-hot float32 ((N, 0) for unconditional models, ignored by mapping)."""
  if c_dim == 0:
    return np.zeros((len(seeds), 0), np.float32)
  if class_idx is None:
    labels = np.asarray(seeds) % c_dim  # tied to the seed, so independent of batching
  else:
    labels = np.full(len(seeds), class_idx)
  return one_hot(labels, c_dim)


@functools.lru_cache(maxsize=None)
def seed_inputs(z_dim, c_dim, class_idx=None):
  """Host function seeds (B,) -> (z (B, z_dim), class labels (B, c_dim)) float32 (map_batches' prepare)."""

  def prepare(seeds):
    seeds = [int(v) for v in seeds]
    return z_from_seeds(seeds, z_dim), class_labels(c_dim, seeds, class_idx)

  return prepare


def iter_styles_from_seeds(g, seeds, psi=0.7, batch_size=256, class_idx=None, mesh=None):
  """Yield flat S batches (b, C) float32 for consecutive chunks of seeds (z made per batch on the host).

  seeds: this process's seeds (may be empty in a multi-process round, see map_batches).
  """
  seeds = np.asarray(list(seeds), np.int64)
  prepare = seed_inputs(g.config.z_dim, g.config.c_dim, class_idx)
  yield from distributed.map_batches(_z_to_s, g, (seeds,), (np.float32(psi),), batch_size, mesh, prepare)


def styles_from_seeds(g, seeds, psi=0.7, batch_size=256, class_idx=None, mesh=None):
  """Seeds (N,) -> flat S (N, C) float32 numpy (same convention as the population)."""
  seeds = list(seeds)
  if not seeds:
    raise ValueError("no seeds given")
  return np.concatenate(list(iter_styles_from_seeds(g, seeds, psi, batch_size, class_idx, mesh)))


def styles_from_ws(g, ws, batch_size=256, mesh=None):
  """W+ codes (N, num_ws, w_dim) -> flat S (N, C) float32 numpy (no truncation applied)."""
  cfg = g.config
  ws = np.asarray(ws, np.float32)
  if ws.ndim != 3 or ws.shape[1:] != (cfg.num_ws, cfg.w_dim):
    raise ValueError(f"W+ codes must have shape (N, {cfg.num_ws}, {cfg.w_dim}), got {ws.shape}")
  if len(ws) == 0:
    raise ValueError("no codes given")
  return np.concatenate(list(distributed.map_batches(_ws_to_s, g, (ws,), (), batch_size, mesh)))
