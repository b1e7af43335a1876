"""Control codes for DCI: how much of S's score is dimension, how much is axis alignment.

S beats W in DCI's D and C, but S also has far more coordinates (a ToyFaces model: 128 w
dimensions, 1,408 style channels; config-f: 512 vs 9,088). Two controls separate the two
explanations, each computed from the stored codes at analysis time:

* `w_expand` -- a random linear expansion of W to S's dimension: w (N, w_dim) @ M with
  M (w_dim, C) i.i.d. N(0, 1 / w_dim). Same number of codes as S, no learned structure.
  (Within one sample S is itself an affine map of w per layer, s_l = A_l w + b_l, so this
  is "S with random instead of learned affine weights".) Columns are grouped like S's
  layers only so that the heat maps have the same shape.
* `s_rotated` -- S with a Haar-random rotation inside every style layer: s_l (N, C_l) @ Q_l,
  Q_l (C_l, C_l) orthogonal. Every layer keeps exactly the information and the per-sample
  norm it had, but its channel axes no longer mean anything. If S's D/C came from the
  learned channel axes, this control drops; if it stays, the score comes from the layer
  structure and the dimension.

Matrices are drawn from `np.random.default_rng([seed, tag, layer])`, so a control is a
pure function of (codes, layout, seed): the same seed gives the same codes in any run,
process or row order. Rows are transformed in chunks (peak memory: the output plus one
chunk), float32 in, float32 out.
"""

from typing import Sequence

import numpy as np

# Flag name -> display name (a row of `dci.format_table`, after Z, W, W+, S).
SPACES = {"w_expand": "W expanded (random)", "s_rotated": "S rotated (per layer)"}
# Which stored code each control is built from.
SOURCE = {"w_expand": "w", "s_rotated": "s"}
_TAG = {"w_expand": 1, "s_rotated": 2}
_ROWS_PER_CHUNK = 8192


def expansion_matrix(w_dim: int, dim: int, seed: int = 0) -> np.ndarray:
  """(w_dim, dim) float32, i.i.d. N(0, 1 / w_dim), from default_rng([seed, 1])."""
  if w_dim < 1 or dim < 1:
    raise ValueError(f"need w_dim, dim >= 1, got {w_dim}, {dim}")
  rng = np.random.default_rng([int(seed), _TAG["w_expand"]])
  return (rng.standard_normal((w_dim, dim)) / np.sqrt(w_dim)).astype(np.float32)


def random_rotation(n: int, rng: np.random.Generator) -> np.ndarray:
  """(n, n) float64 Haar-distributed orthogonal matrix (QR of a Gaussian, signs fixed)."""
  q, r = np.linalg.qr(rng.standard_normal((n, n)))
  return q * np.where(np.diag(r) < 0, -1.0, 1.0)[None, :]


def layer_rotations(sizes: Sequence[int], seed: int = 0) -> list[np.ndarray]:
  """One (C_l, C_l) float32 orthogonal matrix per layer, layer l from default_rng([seed, 2, l])."""
  return [
    random_rotation(int(c), np.random.default_rng([int(seed), _TAG["s_rotated"], l])).astype(np.float32)
    for l, c in enumerate(sizes)
  ]


def _rows(x, fn, out_dim):
  """fn applied to row chunks of x (N, D) -> (N, out_dim) float32."""
  out = np.empty((len(x), out_dim), np.float32)
  for a in range(0, len(x), _ROWS_PER_CHUNK):
    out[a : a + _ROWS_PER_CHUNK] = fn(np.asarray(x[a : a + _ROWS_PER_CHUNK], np.float32))
  return out


def random_expansion(w, dim: int, seed: int = 0) -> np.ndarray:
  """w (N, w_dim) -> (N, dim) float32 = w @ expansion_matrix(w_dim, dim, seed)."""
  w = w if isinstance(w, np.ndarray) else np.asarray(w)
  if w.ndim != 2:
    raise ValueError(f"w must be (N, w_dim), got shape {w.shape}")
  m = expansion_matrix(w.shape[1], dim, seed)
  return _rows(w, lambda x: x @ m, dim)


def rotate_per_layer(s, sizes: Sequence[int], seed: int = 0) -> np.ndarray:
  """Flat S (N, C) -> (N, C) float32; the block of layer l (C_l columns, in order) @ Q_l.

  sizes: channels per style layer (sum = C), e.g. [L.channels for L in layout].
  """
  s = s if isinstance(s, np.ndarray) else np.asarray(s)
  sizes = [int(c) for c in sizes]
  if s.ndim != 2 or s.shape[1] != sum(sizes):
    raise ValueError(f"s must be (N, {sum(sizes)}) for these layer sizes, got shape {s.shape}")
  rots = layer_rotations(sizes, seed)
  starts = np.concatenate([[0], np.cumsum(sizes)])

  def rotate(x):
    return np.concatenate([x[:, a:b] @ q for a, b, q in zip(starts[:-1], starts[1:], rots)], axis=1)

  return _rows(s, rotate, s.shape[1])


def control_codes(space: str, x, layout, seed: int = 0) -> np.ndarray:
  """Codes (N, C) float32 of a control space from its source codes x (SOURCE[space]).

  layout: the generator's style layout (gives C and the layer blocks).
  """
  sizes = [L.channels for L in layout]
  if space == "w_expand":
    return random_expansion(x, sum(sizes), seed)
  if space == "s_rotated":
    return rotate_per_layer(x, sizes, seed)
  raise ValueError(f"unknown control space {space!r}; choose from {', '.join(SPACES)}")
