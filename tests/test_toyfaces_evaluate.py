"""Tests of ToyFaces edit scoring, Fréchet distance and distribution helpers."""

import numpy as np
import pytest

from ss_jax.toyfaces import evaluate as ev
from ss_jax.toyfaces import parts
from ss_jax.toyfaces import render
from ss_jax.toyfaces import train_helpers as th


@pytest.fixture(scope="module")
def faces():
  images, labels, attrs = render.render(np.arange(4), resolution=32)
  return th.to_float(images), labels, attrs


def test_locality_change_inside_eye_mask_only(faces):
  images, labels, _ = faces
  eye = labels == parts.PART_INDEX["eye"]
  assert eye.any(axis=(1, 2)).all()
  after = images.copy()
  after[eye] += 0.3  # Every colour channel, eye pixels only.
  loc = ev.locality(images, after, labels)
  assert list(loc) == [c for c in parts.CATEGORIES if c in loc]
  assert loc["eye"] == pytest.approx(1.0)
  assert sum(loc.values()) == pytest.approx(1.0)
  names, shares, total = ev.locality_shares(images, after, labels)
  assert shares.shape == (4, len(names)) and total.shape == (4,)
  np.testing.assert_allclose(shares[:, names.index("eye")], 1.0)


def test_locality_shares_merge_parts_and_weight_by_change():
  labels = np.zeros((1, 2, 2), np.uint8)
  labels[0, 0] = parts.PART_INDEX["glasses"]
  labels[0, 1, 0] = parts.PART_INDEX["hat"]  # glasses + hat -> "others".
  before = np.zeros((1, 2, 2, 3), np.float32)
  after = before.copy()
  after[0, 0, 0, 0] = 1.0  # glasses: |d| 1
  after[0, 1, 0, :] = 1.0  # hat: |d| 3 (summed over colour)
  after[0, 1, 1, 2] = -4.0  # background: |d| 4
  loc = ev.locality(before, after, labels)
  assert loc["others"] == pytest.approx(0.5)
  assert loc["background"] == pytest.approx(0.5)
  assert loc["skin"] == 0.0
  # Unchanged images: all shares zero rather than NaN.
  assert sum(ev.locality(before, before, labels).values()) == 0.0
  with pytest.raises(ValueError):
    ev.locality(before, after, labels[:, :1])


def test_locality_custom_categories():
  labels = np.array([[[0, 1]]], np.uint8)
  before = np.zeros((1, 1, 2, 3))
  after = np.ones((1, 1, 2, 3))
  cats = {p: ("face" if p == "skin" else "rest") for p in parts.PART_NAMES}
  loc = ev.locality(before, after, labels, cats)
  assert loc == {"face": 0.5, "rest": 0.5}


def test_attribute_dependency_units():
  before = np.array([[0.0, 1.0], [2.0, -1.0]])
  after = np.array([[1.0, 1.0], [2.0, 3.0]])
  std = np.array([0.5, 2.0])
  ad = ev.attribute_dependency(before, after, std)
  np.testing.assert_allclose(ad, [[2.0, 0.0], [0.0, 2.0]])
  assert ad.dtype == np.float64
  np.testing.assert_allclose(ev.mean_attribute_dependency(ad), [1.0, 1.0])
  assert ev.mean_attribute_dependency(ad, target=0) == pytest.approx(1.0)
  logits = np.array([[0.0, 1.0], [2.0, 1.0]])
  np.testing.assert_allclose(ev.population_std(logits), [1.0, 1e-6])
  batches = [logits[:1], logits[1:]]
  np.testing.assert_allclose(ev.population_logit_std(lambda x: x, batches), [1.0, 1e-6])


def test_frechet_distance_identical_sets_is_zero():
  x = np.random.default_rng(0).normal(size=(200, 8)) @ np.diag(np.arange(1, 9.0))
  assert ev.frechet_distance(x, x) == pytest.approx(0.0, abs=1e-8)


def test_frechet_distance_closed_form_diagonal():
  mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
  a, b = np.array([1.0, 4.0, 0.25]), np.array([9.0, 1.0, 0.25])
  want = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
  got = ev.frechet_distance_from_stats(mu1, np.diag(a), mu2, np.diag(b))
  assert got == pytest.approx(want, rel=1e-12)


def test_frechet_distance_matches_scipy_sqrtm():
  scipy_linalg = pytest.importorskip("scipy.linalg")
  rng = np.random.default_rng(1)
  xa = rng.normal(size=(300, 6)) @ rng.normal(size=(6, 6))
  xb = rng.normal(size=(250, 6)) @ rng.normal(size=(6, 6)) + 0.5
  mu1, c1 = ev.feature_stats(xa)
  mu2, c2 = ev.feature_stats(xb)
  covmean = np.real(scipy_linalg.sqrtm(c1 @ c2))
  want = np.sum((mu1 - mu2) ** 2) + np.trace(c1) + np.trace(c2) - 2 * np.trace(covmean)
  assert ev.frechet_distance(xa, xb) == pytest.approx(want, rel=1e-9)
  np.testing.assert_allclose(ev.sqrtm_psd(c1), np.real(scipy_linalg.sqrtm(c1)), atol=1e-10)
  # Rank-deficient covariances (fewer samples than dims) stay finite.
  d = ev.frechet_distance(xa[:4], xb[:4])
  assert np.isfinite(d) and d >= 0


def test_part_areas_and_attribute_rates(faces):
  _, labels, _ = faces
  names, frac = ev.part_area_fractions(labels)
  assert frac.shape == (4, len(names))
  np.testing.assert_allclose(frac.sum(1), 1.0)
  stats = ev.part_area_stats(labels)
  assert stats["background"]["present"] == 1.0
  cmp = ev.compare_part_areas(labels, labels)
  assert all(v["diff"] == 0.0 for v in cmp.values())
  table = ev.format_comparison(cmp)
  assert table.count("\n") == len(cmp) + 1 and "± " in table

  logits = np.array([[1.0, -1.0], [1.0, 2.0]])
  np.testing.assert_allclose(ev.attribute_rates(logits), [1.0, 0.5])
  rates = ev.compare_attribute_rates(logits, -logits, names=("a", "b"))
  assert rates == {"a": {"a": 1.0, "b": 0.0, "diff": -1.0}, "b": {"a": 0.5, "b": 0.5, "diff": 0.0}}
  assert "| a | 1.000 | 0.000 | -1.000 |" in ev.format_comparison(rates)
