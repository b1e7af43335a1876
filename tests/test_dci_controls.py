"""DCI controls: random expansion of W, per-layer random rotation of S, and what they do to D/C."""

import types

import numpy as np
import pytest

from ss_jax.dci import metric as dci, controls as dci_controls

SIZES = (8, 8, 16)  # three "style layers"


def _layout(sizes=SIZES):
  return [types.SimpleNamespace(channels=c) for c in sizes]


def test_expansion_shape_determinism_and_values():
  w = np.random.default_rng(0).standard_normal((50, 6)).astype(np.float32)
  a = dci_controls.random_expansion(w, 40, seed=3)
  assert a.shape == (50, 40) and a.dtype == np.float32
  np.testing.assert_array_equal(a, dci_controls.random_expansion(w, 40, seed=3))
  assert not np.allclose(a, dci_controls.random_expansion(w, 40, seed=4))
  m = np.random.default_rng([3, 1]).standard_normal((6, 40)) / np.sqrt(6)  # the documented draw
  np.testing.assert_allclose(a, w.astype(np.float64) @ m, rtol=1e-4, atol=1e-5)
  assert np.linalg.matrix_rank(a.astype(np.float64), tol=1e-3) == 6  # a linear image of w: no new information
  # Row chunks do not change the result.
  monkey = dci_controls._ROWS_PER_CHUNK
  try:
    dci_controls._ROWS_PER_CHUNK = 7
    np.testing.assert_array_equal(dci_controls.random_expansion(w, 40, seed=3), a)
  finally:
    dci_controls._ROWS_PER_CHUNK = monkey
  with pytest.raises(ValueError, match="w_dim"):
    dci_controls.random_expansion(w[0], 40)


def test_rotation_is_orthogonal_per_layer_and_keeps_layer_norms():
  s = np.random.default_rng(1).standard_normal((30, sum(SIZES))).astype(np.float32) + 2.0
  r = dci_controls.rotate_per_layer(s, SIZES, seed=0)
  assert r.shape == s.shape and r.dtype == np.float32
  np.testing.assert_array_equal(r, dci_controls.control_codes("s_rotated", s, _layout(), seed=0))
  starts = np.cumsum((0,) + SIZES)
  for a, b in zip(starts[:-1], starts[1:]):
    np.testing.assert_allclose(np.linalg.norm(r[:, a:b], axis=1), np.linalg.norm(s[:, a:b], axis=1), rtol=1e-5)
    assert np.abs(r[:, a:b] - s[:, a:b]).max() > 0.5  # the axes did move
  for q, c in zip(dci_controls.layer_rotations(SIZES, 0), SIZES):
    np.testing.assert_allclose(q.T.astype(np.float64) @ q, np.eye(c), atol=1e-5)
  # A layer's rotation depends on (seed, layer index) only, not on the other layers.
  q8 = dci_controls.layer_rotations((8,), 0)[0]
  np.testing.assert_array_equal(dci_controls.layer_rotations((8, 4), 0)[0], q8)
  assert not np.allclose(dci_controls.rotate_per_layer(s, SIZES, seed=1), r)
  with pytest.raises(ValueError, match="layer sizes"):
    dci_controls.rotate_per_layer(s[:, :-1], SIZES)
  with pytest.raises(ValueError, match="unknown control"):
    dci_controls.control_codes("s", s, _layout())


def test_rotation_lowers_d_and_c_of_a_planted_axis_aligned_code():
  """Factors 0, 1 sit on two channels of layer 0, factors 2, 3 on two channels of layer 2.

  Real axes: each factor is one code (D, C near 1). Rotated: every code of a layer mixes
  its layer's two factors (D at most ~0.75: lasso weights them unevenly) and every factor spreads over
  its layer's codes (C drops).
  """
  rng = np.random.default_rng(0)
  s = rng.standard_normal((1200, sum(SIZES))).astype(np.float32)
  logits = s[:, [1, 5, 20, 30]]
  kw = dict(low_pct=25, high_pct=75, num_steps=300)
  real = dci.dci(s, logits, "lasso", **kw)
  rot = dci.dci(dci_controls.rotate_per_layer(s, SIZES, seed=0), logits, "lasso", **kw)
  assert real["D"] > 0.9 and real["C"] > 0.9
  assert rot["D"] < real["D"] - 0.2 and rot["C"] < real["C"] - 0.3
  assert rot["I"] > 0.95  # same information: only the axes moved
