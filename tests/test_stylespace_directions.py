"""W / W+ baselines: InterFaceGAN, GANSpace, SeFa on problems with known answers; W -> S map."""

import jax.numpy as jnp
import numpy as np
import pytest

from ss_jax.stylespace import directions
from ss_jax.stylegan2.generator import flatten_styles

import tiny


@pytest.fixture(scope="module")
def g():
  return tiny.tiny_generator()


def test_interfacegan_recovers_planted_direction():
  rng = np.random.default_rng(0)
  d = 12
  n_true = rng.normal(size=d)
  n_true /= np.linalg.norm(n_true)
  w = rng.normal(size=(4000, d)) * rng.uniform(0.5, 2.0, size=d) + rng.normal(size=d)  # anisotropic, offset
  p = 1 / (1 + np.exp(-6 * (w @ n_true - 0.4)))
  labels = rng.random(len(w)) < p
  r = directions.interfacegan(w, labels)
  assert np.isclose(np.linalg.norm(r["direction"]), 1.0)
  assert r["direction"] @ n_true > 0.98  # recovered, pointing to the positive class
  agree = ((w @ r["direction"] > r["offset"]) == (w @ n_true > 0.4)).mean()
  assert agree > 0.97  # the planted boundary, offset included
  assert r["train_accuracy"] > 0.8
  r2 = directions.interfacegan(w, ~labels)
  assert r2["direction"] @ n_true < -0.98
  with pytest.raises(ValueError, match="one class"):
    directions.interfacegan(w, np.ones(len(w), bool))


def test_interfacegan_ignores_near_constant_dimensions():
  """A dimension with tiny variance and a weak label correlation must not dominate the normal."""
  rng = np.random.default_rng(3)
  w = rng.normal(size=(500, 40))
  w[:, 5] = 1e-4 * rng.normal(size=500)
  labels = w[:, 0] + 0.3 * w[:, 1] + 1e4 * w[:, 5] * 0.2 > 0
  r = directions.interfacegan(w, labels)
  assert abs(r["direction"][5]) < 0.05 and r["direction"][0] > 0.8


def test_ganspace_recovers_top_principal_axis():
  rng = np.random.default_rng(1)
  d = 10
  basis, _ = np.linalg.qr(rng.normal(size=(d, d)))
  scales = np.array([5.0, 3.0] + [1.0] * (d - 2))
  x = (rng.normal(size=(20000, d)) * scales) @ basis.T + 3.0
  r = directions.ganspace(x, k=3)
  assert r["components"].shape == (3, d)
  assert abs(r["components"][0] @ basis[:, 0]) > 0.999
  assert abs(r["components"][1] @ basis[:, 1]) > 0.99
  np.testing.assert_allclose(r["std"][:2], scales[:2], rtol=0.03)
  np.testing.assert_allclose(r["mean"], x.mean(0))
  c = r["components"]
  assert c[0][np.argmax(np.abs(c[0]))] > 0  # sign convention


def test_sefa_matches_numpy_eigh_of_affine_map(g):
  layers = [0, 2, 3]
  # A built independently: columns = styles of unit w vectors minus styles of w = 0, via g.styles.
  cfg = g.config
  eye = np.zeros((cfg.w_dim + 1, cfg.num_ws, cfg.w_dim), np.float32)
  eye[np.arange(cfg.w_dim), :, np.arange(cfg.w_dim)] = 1.0
  s = np.asarray(flatten_styles(g.styles(jnp.asarray(eye))), np.float64)
  cols = s[:-1] - s[-1]  # (w_dim, C)
  sel = np.concatenate([np.arange(g.layout[i].offset, g.layout[i].offset + g.layout[i].channels) for i in layers])
  a = cols[:, sel].T  # (sum C_l, w_dim)
  a = a / np.linalg.norm(a, axis=1, keepdims=True)
  vals, vecs = np.linalg.eigh(a.T @ a)
  r = directions.sefa(g, layers, k=4)
  np.testing.assert_allclose(r["eigenvalues"], vals[::-1][:4], rtol=1e-4)
  for k in range(4):
    assert abs(r["components"][k] @ vecs[:, -1 - k]) > 0.9999
  raw = directions.sefa(g, layers, k=2, normalize=False)
  vals_raw = np.linalg.eigvalsh(cols[:, sel] @ cols[:, sel].T)
  np.testing.assert_allclose(raw["eigenvalues"], vals_raw[::-1][:2], rtol=1e-4)


def test_w_to_s_equals_explicit_wplus_edit(g):
  cfg = g.config
  rng = np.random.default_rng(2)
  ws = rng.normal(size=(3, cfg.num_ws, cfg.w_dim)).astype(np.float32)
  u = rng.normal(size=cfg.w_dim).astype(np.float32)
  rows = directions.parse_rows("1-2", cfg.num_ws)
  assert rows == (1, 2)
  dws = np.zeros_like(ws)
  dws[:, list(rows)] = 2.5 * u
  explicit = np.asarray(flatten_styles(g.styles(ws + dws)) - flatten_styles(g.styles(ws)))
  d = directions.w_to_s(g, u, rows)
  np.testing.assert_allclose(explicit, np.broadcast_to(2.5 * d, explicit.shape), atol=2e-5)
  untouched = [L for L in g.layout if L.w_index not in rows]
  assert all(np.all(d[L.offset : L.offset + L.channels] == 0) for L in untouched)
  assert directions.default_row_ranges(cfg.num_ws)[0] == "all"
  assert directions.layers_of_rows(g.layout, range(cfg.num_ws)) == [L.index for L in g.layout if L.kind == "conv"]
  with pytest.raises(ValueError, match="out of range"):
    directions.parse_rows("0-99", cfg.num_ws)
