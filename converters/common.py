"""Shared helpers for the checkpoint -> ss-jax parameter converters."""

import numpy as np

from converters.io import CheckpointError


class TensorSource:
  """A flat name -> array mapping that reports missing keys and wrong shapes in one line."""

  def __init__(self, tensors, path, prefix=""):
    self.tensors = tensors
    self.path = path
    self.prefix = prefix
    self.used = set()

  def __contains__(self, key):
    return self.prefix + key in self.tensors

  def get(self, key, shape=None):
    """The float32 array stored under prefix + key, checked against shape (None = any) and
    refused (CheckpointError naming the tensor) if it holds NaN or infinite values."""
    full = self.prefix + key
    if full not in self.tensors:
      raise CheckpointError(f"{self.path}: missing tensor '{full}'")
    a = np.asarray(self.tensors[full])
    if shape is not None and tuple(a.shape) != tuple(shape):
      raise CheckpointError(f"{self.path}: tensor '{full}' has shape {tuple(a.shape)}, expected {tuple(shape)}")
    out = np.ascontiguousarray(a, dtype=np.float32)
    if not np.all(np.isfinite(out)):
      bad = int(out.size - np.count_nonzero(np.isfinite(out)))
      raise CheckpointError(
        f"{self.path}: tensor '{full}' holds {bad} NaN or infinite value(s); "
        "refusing a checkpoint that would produce NaN images"
      )
    self.used.add(full)
    return out


def oihw_to_hwio(w):
  """torch conv weight [out, in, kh, kw] -> [kh, kw, in, out]."""
  return np.ascontiguousarray(np.transpose(w, (2, 3, 1, 0)))


def check_fir(path, name, stored, fir=(1.0, 3.0, 3.0, 1.0), scale=1.0):
  """Refuse a checkpoint whose 2-D resampling filter is not the expected separable FIR."""
  a = np.asarray(fir, np.float64)
  ref = np.outer(a, a) / np.outer(a, a).sum() * scale
  if stored.shape != ref.shape or not np.allclose(stored, ref, rtol=1e-6, atol=1e-7):
    raise CheckpointError(f"{path}: '{name}' is not the [1,3,3,1] resampling filter this converter supports")
