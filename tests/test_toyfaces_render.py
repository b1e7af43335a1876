"""Tests for the ToyFaces procedural renderer and its ground truth."""

import numpy as np
import pytest

from ss_jax import toyfaces as tf
from ss_jax.toyfaces import palettes as pal
from ss_jax.toyfaces import render as rd

_IDX = tf.ATTRIBUTE_INDEX


def _dilate(mask: np.ndarray, r: int) -> np.ndarray:
  """Square dilation of bool [N, H, W] by r pixels."""
  out = mask.copy()
  p = np.pad(mask, ((0, 0), (r, r), (r, r)))
  h, w = mask.shape[1:]
  for dy in range(2 * r + 1):
    for dx in range(2 * r + 1):
      out |= p[:, dy : dy + h, dx : dx + w]
  return out


def _interior(labels: np.ndarray, part: int) -> np.ndarray:
  """Pixels whose whole 3x3 neighbourhood carries `part`."""
  return ~_dilate(labels != part, 1)


def _neutral_light(attrs: np.ndarray) -> np.ndarray:
  """Attributes with lighting that leaves colours unchanged (shade == 1)."""
  attrs = attrs.copy()
  attrs[:, _IDX["brightness"]] = 0.5
  attrs[:, _IDX["light_direction"]] = 0.0
  return attrs


@pytest.fixture(scope="module")
def batch():
  return rd.render(np.arange(256), 64)


@pytest.mark.parametrize("res", [32, 64, 128])
def test_shapes_and_dtypes(res):
  images, labels, attrs = rd.render(np.arange(6), res)
  assert images.shape == (6, res, res, 3) and images.dtype == np.uint8
  assert labels.shape == (6, res, res) and labels.dtype == np.uint8
  assert attrs.shape == (6, tf.NUM_ATTRIBUTES) and attrs.dtype == np.float32
  assert labels.max() < tf.NUM_PARTS
  # The face is a sizeable fraction of the picture at every resolution.
  skin = (labels == tf.PART_INDEX["skin"]).mean()
  assert 0.1 < skin < 0.4


def test_determinism_and_batch_independence():
  a = rd.render([3, 7, 11], 64)
  b = rd.render([3, 7, 11], 64)
  for x, y in zip(a, b):
    assert x.tobytes() == y.tobytes()
  c = rd.render([7], 64)
  assert c[0][0].tobytes() == a[0][1].tobytes()
  assert c[1][0].tobytes() == a[1][1].tobytes()
  images = a[0]
  assert not np.array_equal(images[0], images[1])
  assert not np.array_equal(images[1], images[2])


def test_attribute_table_and_sampling():
  assert len(tf.ATTRIBUTE_NAMES) >= 12
  assert len(set(tf.ATTRIBUTE_NAMES)) == len(tf.ATTRIBUTE_NAMES)
  assert tf.BINARY.shape == (tf.NUM_ATTRIBUTES,) and tf.BINARY.dtype == bool
  for a in tf.ATTRIBUTES:
    assert a.low < a.high
    assert all(p in tf.PART_NAMES or p == "all" for p in a.parts), a
    assert not (a.local and "all" in a.parts)
  assert tf.LOCAL.sum() >= 8 and (~tf.LOCAL).sum() >= 4
  attrs = tf.sample_attributes(np.random.default_rng(0), 500)
  assert attrs.dtype == np.float32 and attrs.shape == (500, tf.NUM_ATTRIBUTES)
  lo = np.array([a.low for a in tf.ATTRIBUTES])
  hi = np.array([a.high for a in tf.ATTRIBUTES])
  assert np.all(attrs >= lo) and np.all(attrs <= hi)
  assert set(np.unique(attrs[:, tf.BINARY])) == {0.0, 1.0}
  targets = tf.attribute_targets(attrs)
  assert targets.dtype == np.float32
  assert np.all(targets >= 0) and np.all(targets <= 1)
  np.testing.assert_array_equal(targets[:, tf.BINARY], attrs[:, tf.BINARY])
  np.testing.assert_allclose(tf.attribute_targets(lo[None]), 0.0)
  np.testing.assert_allclose(tf.attribute_targets(hi[None]), 1.0)
  # Continuous targets spread over most of [0, 1].
  cont = targets[:, ~tf.BINARY]
  assert np.all(cont.min(0) < 0.05) and np.all(cont.max(0) > 0.95)
  with pytest.raises(ValueError):
    tf.sample_attributes(np.random.default_rng(0))
  with pytest.raises(ValueError):
    tf.sample_attributes([3, -1])


def test_binary_prevalence():
  attrs = tf.sample_attributes(np.arange(2000))
  prevalence = attrs[:, tf.BINARY].mean(0)
  names = np.array(tf.ATTRIBUTE_NAMES)[tf.BINARY]
  assert len(names) >= 5
  for name, p in zip(names, prevalence):
    assert 0.1 <= p <= 0.7, (name, p)


def test_every_part_appears(batch):
  _, labels, _ = batch
  present = np.bincount(labels.ravel(), minlength=tf.NUM_PARTS)
  missing = [tf.PART_NAMES[k] for k in np.nonzero(present == 0)[0]]
  assert not missing


def test_part_and_category_helpers(batch):
  _, labels, _ = batch
  assert set(tf.CATEGORY_OF_PART) == set(tf.PART_NAMES)
  assert set(tf.CATEGORY_OF_PART.values()) <= set(tf.CATEGORIES)
  for name in ("glasses", "hat", "earring"):
    assert tf.CATEGORY_OF_PART[name] == "others"
  masks = tf.part_masks(labels[:4])
  assert masks.shape == (4, tf.NUM_PARTS, 64, 64) and masks.dtype == bool
  assert np.all(masks.sum(1) == 1)
  cats = tf.category_labels(labels[:4])
  assert cats.dtype == np.uint8 and cats.shape == (4, 64, 64)
  eye = labels[:4] == tf.PART_INDEX["eye"]
  assert np.all(cats[eye] == tf.CATEGORIES.index("eye"))
  hat = labels[:4] == tf.PART_INDEX["hat"]
  assert np.all(cats[hat] == tf.CATEGORIES.index("others"))
  assert tf.colorize_labels(labels[:4]).shape == (4, 64, 64, 3)


@pytest.mark.parametrize("res", [32, 64])
def test_windows_never_clip_parts(res):
  attrs = tf.sample_attributes(np.arange(48))
  # Extreme poses and sizes stress the static per-part windows.
  attrs[:16, _IDX["head_roll"]] = np.where(np.arange(16) % 2, 1.0, -1.0)
  attrs[:16, _IDX["head_x"]] = np.where(np.arange(16) % 4 < 2, 1.0, -1.0)
  attrs[:16, _IDX["head_y"]] = np.where(np.arange(16) % 3, 1.0, -1.0)
  for name in ("face_width", "hair_volume", "hair_length", "ear_size", "eye_size", "nose_size", "eyebrow_thickness"):
    attrs[:16, _IDX[name]] = tf.ATTRIBUTES[_IDX[name]].high
  for name in ("glasses", "hat", "earrings", "mouth_open"):
    attrs[:8, _IDX[name]] = 1.0
  fast = rd.render_attributes(attrs, res)
  full = rd.render_attributes(attrs, res, full_windows=True)
  np.testing.assert_array_equal(fast[1], full[1])
  np.testing.assert_array_equal(fast[0], full[0])


def test_background_hint_is_exact(monkeypatch):
  """Layers painted with over_background=False never touch the background."""
  attrs = tf.sample_attributes(np.arange(64))
  attrs[:16, _IDX["face_width"]] = 0.0  # Narrowest face, widest features.
  attrs[:16, _IDX["eye_size"]] = 1.0
  attrs[:16, _IDX["eyebrow_thickness"]] = 1.0
  fast = rd.render_attributes(attrs, 32)[0]
  paint = rd.cv.Canvas.paint
  monkeypatch.setattr(rd.cv.Canvas, "paint", lambda self, *a, **k: paint(self, *a[:4]))
  np.testing.assert_array_equal(fast, rd.render_attributes(attrs, 32)[0])


def test_background_is_flat(batch):
  images, labels, _ = batch
  bg = tf.PART_INDEX["background"]
  assert np.all(labels[:, 0, 0] == bg)
  inside = _interior(labels, bg)
  corner = images[:, :1, :1].astype(int)
  diff = np.abs(images.astype(int) - corner).max(-1)
  assert inside.sum() > 0.1 * inside.size
  assert np.all(diff[inside] == 0)


def _fraction_near(images, mask, colors, tol=6.0):
  """Share of masked pixels near a blend of two of colors [N, C, 3].

  Anti-aliasing mixes neighbouring colours, so a pixel counts as matching if
  it lies within tol (0..255 units, max-norm) of the segment between any two
  listed colours (or of one colour).
  """
  img = images.astype(np.float32)[mask]  # [P, 3]
  ref = np.asarray(colors, np.float32) * 255.0
  ref = np.broadcast_to(ref[:, None, None], mask.shape + ref.shape[1:])[mask]
  best = np.full(len(img), np.inf, np.float32)
  c = ref.shape[1]
  for i in range(c):
    for j in range(i, c):
      a, b = ref[:, i], ref[:, j]
      ab = b - a
      t = ((img - a) * ab).sum(-1) / np.maximum((ab * ab).sum(-1), 1e-6)
      near = a + np.clip(t, 0.0, 1.0)[:, None] * ab
      best = np.minimum(best, np.abs(img - near).max(-1))
  return float((best <= tol).mean())


def test_labels_match_painted_colours():
  attrs = _neutral_light(tf.sample_attributes(np.arange(128)))
  images, labels = rd.render_attributes(attrs, 64)
  n = len(attrs)
  const = lambda c: np.broadcast_to(np.asarray(c, np.float32), (n, 3))
  skin = pal.palette(pal.SKIN, attrs[:, _IDX["skin_tone"]])
  iris = pal.palette(pal.IRIS, attrs[:, _IDX["iris_color"]])
  lips = pal.palette(pal.LIPS, attrs[:, _IDX["lip_color"]])
  hair = pal.palette(pal.HAIR, attrs[:, _IDX["hair_color"]])
  eye_colors = np.stack([const(pal.SCLERA), iris, const(pal.PUPIL), const(pal.LASH)], 1)
  mouth_colors = np.stack(
    [lips, 0.85 * lips, 0.55 * lips, const(pal.MOUTH_INSIDE), const(pal.TEETH), const(pal.TONGUE)], 1
  )
  cases = {
    "eye": (eye_colors, 0.9),
    "mouth": (mouth_colors, 0.9),
    "skin": (skin[:, None], 0.99),
    "hair": (hair[:, None], 0.99),
  }
  for part, (colors, min_share) in cases.items():
    mask = _interior(labels, tf.PART_INDEX[part])
    assert mask.sum() > 100, part
    share = _fraction_near(images, mask, colors)
    assert share >= min_share, (part, share)
  # Eye pixels are never plain skin (eyes are painted over the face), and
  # skin-labelled pixels off the part borders are exactly the skin colour.
  eye = labels == tf.PART_INDEX["eye"]
  assert _fraction_near(images, eye, skin[:, None], tol=2) < 0.02
  skin_px = _interior(labels, tf.PART_INDEX["skin"])
  ref = np.round(skin * 255)[:, None, None]
  err = np.abs(images.astype(np.float32) - ref).max(-1)[skin_px]
  assert (err <= 1).mean() > 0.99


@pytest.mark.parametrize("name", [a.name for a in tf.ATTRIBUTES if a.local])
def test_local_edit_is_local(name):
  """Editing a local attribute changes only pixels of its listed parts.

  Exactly: no pixel outside the parts' amodal footprints (before or after)
  changes. Visibly: all but a handful of anti-aliased pixels at occluder
  edges lie within 2 px of the parts' visible label regions.
  """
  info = tf.ATTRIBUTES[_IDX[name]]
  attrs = tf.sample_attributes(np.arange(32))
  lo, hi = attrs.copy(), attrs.copy()
  # 0.1 -> 0.6 of the range (hues wrap, so low and high can coincide).
  span = info.high - info.low
  lo[:, _IDX[name]] = info.low if info.binary else info.low + 0.1 * span
  hi[:, _IDX[name]] = info.high if info.binary else info.low + 0.6 * span
  img_lo, lab_lo, foot_lo = rd.render_footprints(lo, 64)
  img_hi, lab_hi, foot_hi = rd.render_footprints(hi, 64)
  np.testing.assert_array_equal(img_lo, rd.render_attributes(lo, 64)[0])
  changed = np.any(img_lo != img_hi, axis=-1)
  assert changed.any(), name
  parts = [tf.PART_INDEX[p] for p in info.parts]
  foot = (foot_lo[:, parts] | foot_hi[:, parts]).any(1)
  assert not (changed & ~foot).any(), (name, (changed & ~foot).sum())
  region = np.isin(lab_lo, parts) | np.isin(lab_hi, parts)
  leak = (changed & ~_dilate(region, 2)).sum()
  assert leak <= 0.005 * changed.sum(), (name, leak, changed.sum())
  # Labels outside the listed parts are untouched.
  np.testing.assert_array_equal(lab_lo[~region], lab_hi[~region])


def test_global_attribute_moves_the_face():
  attrs = tf.sample_attributes(np.arange(8))
  a, b = attrs.copy(), attrs.copy()
  a[:, _IDX["head_x"]], b[:, _IDX["head_x"]] = -1.0, 1.0
  la, lb = rd.render_attributes(a, 64)[1], rd.render_attributes(b, 64)[1]
  skin = tf.PART_INDEX["skin"]
  cols = np.arange(64)
  mean_x = lambda lab: ((lab == skin) * cols).sum((1, 2)) / (lab == skin).sum((1, 2))
  assert np.all(mean_x(lb) - mean_x(la) > 3)


def test_supersampling_keeps_labels():
  attrs = tf.sample_attributes(np.arange(8))
  img1, lab1 = rd.render_attributes(attrs, 32)
  for s in (2, 3):
    img, lab = rd.render_attributes(attrs, 32, supersample=s)
    assert img.shape == img1.shape and img.dtype == np.uint8
    assert (lab != lab1).mean() < 1e-3
    err = np.abs(img.astype(int) - img1.astype(int)).mean()
    assert err < 4.0, (s, err)
