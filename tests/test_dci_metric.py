"""Tests for the DCI metric (ss_jax.dci.metric) and its regressors (ss_jax.dci.regressors)."""

import math
import sys

import numpy as np
import pytest
from scipy import stats

from ss_jax.dci import metric as dci
from ss_jax.dci import regressors as dci_regressors


def _reference_dci(r):
  """Independent transcription of disentanglement_lib dci.py (scipy.stats.entropy)."""
  per_code = 1.0 - stats.entropy(r.T + 1e-11, base=r.shape[1])
  per_factor = 1.0 - stats.entropy(r + 1e-11, base=r.shape[0])
  w = np.ones_like(r) if r.sum() == 0.0 else r
  d = np.sum(per_code * w.sum(axis=1) / w.sum())
  c = np.sum(per_factor * w.sum(axis=0) / w.sum())
  return d, c, per_code, per_factor


def _planted(n=20000, dim=8, num_attr=4, seed=0):
  rng = np.random.default_rng(seed)
  z = rng.standard_normal((n, dim)).astype(np.float32)
  logits = 2.0 * z[:, :num_attr] + 0.1 * rng.standard_normal((n, num_attr))
  return z, logits, rng


# ----------------------------------------------------------------------------- scores


def test_identity_like_importance_is_perfect():
  r = np.zeros((6, 4))
  r[[2, 0, 3, 5], [0, 1, 2, 3]] = [0.5, 2.0, 1.0, 3.0]  # codes 1, 4 unused
  d, c = dci.dci_from_importance(r)
  np.testing.assert_allclose([d, c], [1.0, 1.0], atol=1e-8)
  np.testing.assert_allclose(dci.completeness_per_factor(r), 1.0, atol=1e-8)


def test_uniform_importance_is_zero():
  d, c = dci.dci_from_importance(np.full((5, 3), 0.7))
  np.testing.assert_allclose([d, c], [0.0, 0.0], atol=1e-12)


def test_two_by_two_by_hand():
  r = np.array([[1.0, 0.0], [1.0, 1.0]])
  # Code 0 -> factor 0 only: D_0 = 1. Code 1 split 50/50: H_2 = 1, D_1 = 0.
  # Code weights (1/3, 2/3) -> D = 1/3.
  # Factor 0 split 50/50 over codes: C_0 = 0; factor 1 only on code 1: C_1 = 1.
  # disentanglement_lib factor weights (2/3, 1/3) -> C = 1/3; uniform mean = 1/2.
  np.testing.assert_allclose(dci.disentanglement_per_code(r), [1.0, 0.0], atol=1e-9)
  np.testing.assert_allclose(dci.completeness_per_factor(r), [0.0, 1.0], atol=1e-9)
  np.testing.assert_allclose(dci.dci_from_importance(r), [1 / 3, 1 / 3], atol=1e-9)
  assert dci.completeness(r, factor_weighting="uniform") == pytest.approx(0.5, abs=1e-9)


def test_three_by_two_by_hand():
  r = np.array([[3.0, 1.0], [1.0, 1.0], [0.0, 2.0]])
  log = math.log
  d0 = 1 - (-(0.75 * log(0.75) + 0.25 * log(0.25)) / log(2))  # row (3, 1)/4
  d1 = 0.0  # row (1, 1)/2
  d2 = 1.0  # row (0, 2)/2
  d = (4 / 8) * d0 + (2 / 8) * d1 + (2 / 8) * d2  # row sums 4, 2, 2 of 8
  c0 = 1 - (-(0.75 * log(0.75) + 0.25 * log(0.25)) / log(3))  # column (3, 1, 0)/4
  c1 = 1 - (-(2 * 0.25 * log(0.25) + 0.5 * log(0.5)) / log(3))  # column (1, 1, 2)/4
  c = (4 / 8) * c0 + (4 / 8) * c1  # column sums 4, 4 of 8
  assert d == pytest.approx(0.344361, abs=1e-6)
  np.testing.assert_allclose(dci.dci_from_importance(r), [d, c], atol=1e-9)
  np.testing.assert_allclose(dci.disentanglement_per_code(r), [d0, d1, d2], atol=1e-9)
  np.testing.assert_allclose(dci.completeness_per_factor(r), [c0, c1], atol=1e-9)


@pytest.mark.parametrize("shape", [(7, 3), (50, 12), (3, 9), (2, 2)])
def test_matches_disentanglement_lib_transcription(shape):
  rng = np.random.default_rng(sum(shape))
  for trial in range(5):
    r = rng.exponential(size=shape) * (rng.random(shape) < 0.6)
    if trial == 1:
      r[0] = 0.0  # zero code row
    if trial == 2:
      r[:, 0] = 0.0  # zero factor column
    if trial == 3:
      r[:] = 0.0  # all zero: uniform weights, scores 0, no NaN
    d, c, per_code, per_factor = _reference_dci(r)
    np.testing.assert_allclose(dci.dci_from_importance(r), [d, c], rtol=0, atol=1e-10)
    np.testing.assert_allclose(dci.disentanglement_per_code(r), per_code, rtol=0, atol=1e-10)
    np.testing.assert_allclose(dci.completeness_per_factor(r), per_factor, rtol=0, atol=1e-10)
    assert np.isfinite([d, c]).all()


def test_base_one_is_defined_and_bad_input_rejected():
  d, c = dci.dci_from_importance(np.array([[1.0], [0.0], [2.0]]))  # one factor
  assert d == pytest.approx(1.0) and 0.0 <= c <= 1.0
  with pytest.raises(ValueError):
    dci.dci_from_importance(np.array([[1.0, -0.1]]))
  with pytest.raises(ValueError):
    dci.completeness(np.ones((2, 2)), factor_weighting="mean")


# -------------------------------------------------------------------------- data prep


def test_select_attributes():
  n = 1000
  logits = np.ones((n, 4))
  logits[:51, 0] = -1.0  # 5.1% negative -> kept
  logits[:50, 1] = -1.0  # exactly 5% -> dropped (needs > int(0.05 n))
  logits[:500, 2] = -1.0
  logits[:100, 3] = 0.0  # zeros count as neither side -> dropped
  np.testing.assert_array_equal(dci.select_attributes(logits), [0, 2])
  np.testing.assert_array_equal(dci.select_attributes(logits, min_frac=0.4), [2])


def test_extreme_split():
  rng = np.random.default_rng(3)
  n = 5000
  logits = rng.standard_normal(n) + 0.3
  codes = np.arange(n, dtype=np.float64)[:, None] * np.ones((1, 3))
  s = dci.extreme_split_indices(logits, seed=7)
  lo, hi = np.percentile(logits, [2, 98])
  expect = np.flatnonzero((logits < lo) | (logits > hi))
  both = np.concatenate([s.train_idx, s.test_idx])
  np.testing.assert_array_equal(np.sort(both), expect)  # disjoint cover of the extremes
  assert len(s.train_idx) == len(expect) // 2 and len(expect) == 200
  np.testing.assert_array_equal(s.y_train, logits[s.train_idx] > 0)
  assert s.y_train.min() == 0 and s.y_train.max() == 1
  # Same seed -> identical split; another seed -> a different one.
  s2 = dci.extreme_split_indices(logits, seed=7)
  np.testing.assert_array_equal(s.train_idx, s2.train_idx)
  assert not np.array_equal(s.train_idx, dci.extreme_split_indices(logits, seed=8).train_idx)
  x_tr, y_tr, x_te, y_te = dci.extreme_split(codes, logits, seed=7)
  np.testing.assert_array_equal(x_tr[:, 0], s.train_idx)
  np.testing.assert_array_equal(x_te[:, 1], s.test_idx)
  np.testing.assert_array_equal(y_te, s.y_test)


# -------------------------------------------------------------------------- regressors


def test_lasso_recovers_planted_structure():
  z, logits, rng = _planted()
  res = dci.dci(z, logits, seed=0)
  assert res["D"] > 0.99 and res["C"] > 0.99 and res["I"] > 0.99
  np.testing.assert_array_equal(res["kept_attributes"], [0, 1, 2, 3])
  assert res["importance"].shape == (8, 4)
  np.testing.assert_array_equal(res["importance"].argmax(0), [0, 1, 2, 3])
  np.testing.assert_allclose(res["importance"].sum(0), 1.0)
  assert res["per_code_disentanglement"].shape == (8,)
  assert res["per_factor_completeness"].shape == (4,)

  q, _ = np.linalg.qr(rng.standard_normal((8, 8)))
  mixed = dci.dci(z @ q.astype(np.float32), logits, seed=0)
  assert mixed["I"] > 0.95  # still informative, but entangled
  assert mixed["D"] < res["D"] - 0.2 and mixed["C"] < res["C"] - 0.2


def test_lasso_is_deterministic_and_chunking_invariant():
  z, logits, rng = _planted(n=10000, dim=6, num_attr=3, seed=1)
  z = z @ np.linalg.qr(rng.standard_normal((6, 6)))[0]  # dense, non-trivial importances
  names = ["a", "b", "c"]
  r1 = dci.dci(z, logits, seed=5, attribute_names=names, num_steps=150)
  r2 = dci.dci(z, logits, seed=5, attribute_names=names, num_steps=150)
  assert r1["kept_attributes"] == names
  np.testing.assert_array_equal(r1["importance"], r2["importance"])
  np.testing.assert_array_equal(r1["per_attribute_accuracy"], r2["per_attribute_accuracy"])
  # Tiny budget -> one attribute per chunk; must match the single-chunk fit.
  r3 = dci.dci(z, logits, seed=5, num_steps=150, max_chunk_bytes=1)
  np.testing.assert_allclose(r3["importance"], r1["importance"], atol=1e-5)
  r4 = dci.dci(z, logits, seed=6, num_steps=150)  # other seed -> other splits
  assert not np.array_equal(r4["importance"], r1["importance"])


def test_lasso_ignores_constant_features_and_padding():
  rng = np.random.default_rng(2)
  z = rng.standard_normal((4000, 4))
  z[:, 3] = 5.0  # constant code
  splits = [
    dci.extreme_split_indices(z[:, 0] + 0.05 * rng.standard_normal(4000), seed=0),
    dci.extreme_split_indices(z[:, 1], high_pct=95, seed=1),
  ]  # unequal sizes
  imp, test_acc, _ = dci_regressors.lasso_importance(z, splits, num_steps=200)
  assert np.all(imp[3] == 0.0) and np.all(np.isfinite(imp))
  np.testing.assert_array_equal(imp.argmax(0), [0, 1])
  assert np.all(test_acc > 0.97)


def test_gbt_path():
  pytest.importorskip("sklearn")
  z, logits, _ = _planted(n=6000, dim=5, num_attr=2, seed=4)
  res = dci.dci(z, logits, method="gbt", seed=0, n_estimators=20, max_workers=2)
  np.testing.assert_array_equal(res["importance"].argmax(0), [0, 1])
  np.testing.assert_allclose(res["importance"].sum(0), 1.0)
  assert res["I"] > 0.95 and res["D"] > 0.8
  again = dci.dci(z, logits, method="gbt", seed=0, n_estimators=20, max_workers=2)
  np.testing.assert_array_equal(res["importance"], again["importance"])


def test_gbt_without_sklearn_has_clear_error(monkeypatch):
  monkeypatch.setitem(sys.modules, "sklearn", None)  # makes `import sklearn` fail
  z, logits, _ = _planted(n=1000, dim=3, num_attr=2)
  with pytest.raises(ImportError, match="scikit-learn"):
    dci.dci(z, logits, method="gbt")


def test_bad_method():
  z, logits, _ = _planted(n=1000, dim=3, num_attr=2)
  with pytest.raises(ValueError):
    dci.dci(z, logits, method="svm")


# ------------------------------------------------------------------------------ table


def test_format_table():
  mk = lambda d, n: dict(D=d, C=0.5, I=0.98765, kept_attributes=list(range(n)))
  table = dci.format_table({"S": mk(0.75, 31), "mine": mk(0.1, 2), "W": mk(0.54, 31)})
  lines = table.split("\n")
  assert lines[0] == "| Space | D | C | I | kept attributes |"
  assert lines[2] == "| W | 0.540 | 0.500 | 0.988 | 31 |"
  assert lines[3].startswith("| S | 0.750 |")
  assert lines[4] == "| mine | 0.100 | 0.500 | 0.988 | 2 |"
  assert len(lines) == 5
