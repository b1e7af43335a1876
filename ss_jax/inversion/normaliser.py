"""The normalisation of an encoder's outputs: per-coordinate centres and scales of S and W+.

The encoder's heads (ss_jax.inversion.encoder) predict normalised codes,

    S:  (s - s_mean) / s_std        s_mean, s_std: (C,) population stats of flat S
    W+: (w - w_avg) / w_std         w_avg, w_std: (w_dim,), shared by every W+ row

so every output coordinate has unit scale whatever the generator. A `Normaliser` (a pytree of
float32 arrays, saved with the encoder) holds the statistics;
`encoder_training.compute_normaliser` computes them.
"""

import dataclasses

import flax.struct
import jax
import numpy as np


@flax.struct.dataclass
class Normaliser:
  """Per-coordinate scales of the codes (a pytree of float32 arrays).

  s_mean, s_std: (C,) population mean / std (ddof 0) of flat S.
  w_avg, w_std: (w_dim,) centre and RMS deviation of W, shared by all W+ rows.
  """

  s_mean: jax.Array
  s_std: jax.Array
  w_avg: jax.Array
  w_std: jax.Array

  @classmethod
  def create(cls, s_mean, s_std, w_avg, w_std, min_std=1e-6):
    """float32 copies; stds are floored at min_std * their maximum (no division by ~0)."""
    f = lambda a: np.asarray(a, np.float32)
    s_std, w_std = f(s_std), f(w_std)
    s_std = np.maximum(s_std, min_std * max(float(s_std.max()), 1e-30))
    w_std = np.maximum(w_std, min_std * max(float(w_std.max()), 1e-30))
    return cls(f(s_mean), s_std, f(w_avg), w_std)

  @classmethod
  def identity(cls, num_style_channels, w_dim):
    """Zero means, unit stds (no normalisation)."""
    return cls.create(np.zeros(num_style_channels), np.ones(num_style_channels), np.zeros(w_dim), np.ones(w_dim))

  def to_arrays(self):
    return {f.name: np.asarray(getattr(self, f.name), np.float32) for f in dataclasses.fields(self)}


def normalise_s(norm: Normaliser, s):
  """flat S (N, C) -> (s - s_mean) / s_std."""
  return (s - norm.s_mean) / norm.s_std


def denormalise_s(norm: Normaliser, s_norm):
  """(N, C) normalised -> flat S (N, C)."""
  return s_norm * norm.s_std + norm.s_mean


def normalise_wplus(norm: Normaliser, wplus):
  """W+ (N, num_ws, w_dim) -> (w - w_avg) / w_std."""
  return (wplus - norm.w_avg) / norm.w_std


def denormalise_wplus(norm: Normaliser, w_norm):
  """(N, num_ws, w_dim) normalised -> W+."""
  return w_norm * norm.w_std + norm.w_avg
