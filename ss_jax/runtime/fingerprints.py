"""Fingerprints that guard resumed jobs against swapped models: sha1 over the bytes of a pytree's
array leaves (in tree order), optionally after a prefix."""

import hashlib

import jax
import numpy as np


def tree_fingerprint(tree, prefix: bytes = b"") -> str:
  """sha1 hex of prefix + the C-order bytes of every leaf of `tree` (jax.tree.leaves order)."""
  h = hashlib.sha1(prefix)
  for leaf in jax.tree.leaves(tree):
    h.update(np.ascontiguousarray(np.asarray(leaf)).tobytes())
  return h.hexdigest()


def model_fingerprint(g) -> str:
  """sha1 of a generator's config and every parameter/buffer byte (g: anything with .config.to_dict(),
  .params, .buffers)."""
  return tree_fingerprint((g.params, g.buffers), repr(sorted(g.config.to_dict().items())).encode())
