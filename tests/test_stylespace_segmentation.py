"""Category tables, label sources and the block-majority reduction."""

import numpy as np
import pytest
from PIL import Image

from ss_jax.stylespace import segmentation


def test_ffhq_table_matches_official_merge():
  t = segmentation.FFHQ
  assert t.num_classes == 19 and t.num_categories == 11
  cat = dict(zip(t.classes, (t.categories[c] for c in t.lut)))
  for cls in ("eye_g", "ear_r", "neck_l", "hat"):
    assert cat[cls] == "others"
  for cls in ("mouth", "u_lip", "l_lip"):
    assert cat[cls] == "mouth"
  assert cat["l_brow"] == cat["r_brow"] == "eyebrow" and cat["cloth"] == "clothes"
  # GetMask.py:CFFHQ: mapping list index + 1 is the new label, unmapped -> 0.
  official = [[0], [1], [2, 3], [4, 5], [7, 8], [10], [11, 12, 13], [14], [16], [17]]
  want = np.zeros(19, int)
  for i, members in enumerate(official):
    want[members] = i + 1
  np.testing.assert_array_equal(t.lut, want)
  np.testing.assert_array_equal(t.merge(np.array([[0, 12, 18]])), [[1, 7, 0]])


def test_table_from_dict_and_errors():
  t = segmentation.table_from_dict(
    "t", ["rest", "a", "b"], ["x", "y", "z", "w"], {"a": ["x", 3], "b": ["y"]}, default="rest"
  )
  assert t.lut == (1, 2, 0, 1)
  assert segmentation.CategoryTable.from_json(t.to_dict()) == t
  with pytest.raises(ValueError, match="two categories"):
    segmentation.table_from_dict("t", ["a", "b"], ["x"], {"a": ["x"], "b": ["x"]})
  with pytest.raises(ValueError, match="without a category"):
    segmentation.table_from_dict("t", ["a"], ["x", "y"], {"a": ["x"]}, default=None)
  with pytest.raises(ValueError, match="has 4 classes"):
    t.merge(np.array([4]))
  with pytest.raises(ValueError, match="unknown category table"):
    segmentation.get_table("cars")


def test_toyfaces_table_uses_ffhq_categories():
  t = segmentation.get_table("toyfaces")
  assert t.categories == segmentation.FFHQ_CATEGORIES
  assert t.categories[t.lut[t.classes.index("glasses")]] == "others"
  assert t.categories[t.lut[t.classes.index("hair")]] == "hair"


def test_majority_vote_by_hand():
  lab = np.array([[1, 1, 2, 2], [1, 3, 2, 3], [0, 0, 3, 3], [2, 2, 1, 1]])[None]
  # Blocks: {1,1,1,3} -> 1; {2,2,2,3} -> 2; {0,0,2,2} tie -> 0 (lowest id); {3,3,1,1} tie -> 1.
  np.testing.assert_array_equal(segmentation.reduce_labels(lab, 2, 4)[0], [[1, 2], [0, 1]])
  np.testing.assert_array_equal(segmentation.reduce_labels(lab, 4, 4), lab)
  np.testing.assert_array_equal(segmentation.category_areas(lab, 4), [[2, 5, 5, 4]])
  with pytest.raises(ValueError, match="not a multiple"):
    segmentation.reduce_labels(lab, 3, 4)


def test_label_pngs_by_seed_or_index(tmp_path):
  a = np.arange(16, dtype=np.uint8).reshape(4, 4) % 19
  Image.fromarray(a).save(tmp_path / "seed0007.png")
  Image.fromarray(a.T.copy()).save(tmp_path / "00001.png")
  got = segmentation.load_label_pngs(tmp_path, [7, 8], [0, 1])
  np.testing.assert_array_equal(got, [a, a.T])
  with pytest.raises(ValueError, match="seed0009.png or 00002.png"):
    segmentation.load_label_pngs(tmp_path, [9], [2])
  Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "seed0010.png")
  with pytest.raises(ValueError, match="single-channel"):
    segmentation.load_label_pngs(tmp_path, [10], [3])
  with pytest.raises(ValueError, match="do not match the images' size"):
    segmentation.check_labels(got, segmentation.FFHQ, (8, 8))


def test_segmenter_registry_and_import_path():
  fn, table = segmentation.get_segmenter("tests.test_stylespace_segmentation:_halves")
  assert table is None
  lab = segmentation.segment(fn, np.zeros((3, 4, 4, 3), np.uint8), batch_size=2)
  assert lab.shape == (3, 4, 4) and lab[:, :, 2:].min() == 1
  with pytest.raises(ValueError, match="unknown segmenter"):
    segmentation.get_segmenter("nope")
  with pytest.raises(ValueError, match="returned labels of shape"):
    segmentation.segment(lambda x: x[..., 0][:, :2], np.zeros((1, 4, 4, 3), np.uint8))


def _halves(images):
  lab = np.zeros(images.shape[:3], np.int32)
  lab[:, :, images.shape[2] // 2 :] = 1
  return lab


def test_toyfaces_segmenter_is_registered(monkeypatch):
  from ss_jax.toyfaces import models

  monkeypatch.setattr(models, "load_segmenter", lambda: _halves)  # the shipped weights may be absent
  fn, table = segmentation.get_segmenter("toyfaces")
  assert fn is _halves and table == "toyfaces"
  lab = segmentation.segment(fn, np.zeros((2, 4, 4, 3), np.uint8))
  assert segmentation.get_table(table).merge(lab).max() < 11
