"""Tests of the ToyFaces helper models: shipped quality, interfaces, training."""

import json

import jax
import numpy as np
import pytest

from ss_jax.toyfaces import attributes, models, parts
from ss_jax.toyfaces import model_metrics
from ss_jax.toyfaces import train_helpers as th

# Held-out quality bars, a little below what the shipped models measured on
# these 128 renders (mIoU 0.854; mean AUC 0.912 over all 26 attributes, 0.992
# over the 21 with held-out AUC >= 0.8; see the "extra" entry of their
# config.json for the 1024-render metrics).
MIN_MIOU = 0.80
MIN_MEAN_AUC = 0.88
MIN_MEAN_AUC_RELIABLE = 0.97


@pytest.fixture(scope="module")
def heldout():
  return th.render_batch(th.heldout_seeds(128))


@pytest.fixture(scope="module")
def segmenter():
  return models._default_segmenter()  # Shares compilations with `segment`.


@pytest.fixture(scope="module")
def classifier():
  return models._default_classifier()


def test_shipped_files_are_small_and_described():
  for d, kind in ((models.SEGMENTER_DIR, "segmenter"), (models.CLASSIFIER_DIR, "classifier")):
    meta = json.loads((d / "config.json").read_text())
    assert meta["kind"] == kind
    assert "heldout_metrics" in meta["extra"]
    assert (d / "params.npz").stat().st_size < 1.6e6


def test_segmenter_heldout_miou(segmenter, heldout):
  images, labels, _ = heldout
  m = model_metrics.evaluate_segmenter(segmenter, images, labels)
  assert m["miou"] >= MIN_MIOU, m
  assert m["pixel_accuracy"] >= 0.97, m


def test_classifier_heldout_auc(classifier, heldout):
  images, _, attrs = heldout
  m = model_metrics.evaluate_classifier(classifier, images, attrs)
  assert m["mean_auc"] >= MIN_MEAN_AUC, m
  # Binary attributes are easy: each must be nearly perfect.
  for name in np.array(attributes.ATTRIBUTE_NAMES)[attributes.BINARY]:
    assert m["auc"][name] >= 0.97, (name, m["auc"][name])
  reliable = classifier.reliable()
  assert reliable.sum() >= 20 and reliable[attributes.BINARY].all()
  names = np.array(classifier.attribute_names)[reliable]
  assert np.mean([m["auc"][n] for n in names]) >= MIN_MEAN_AUC_RELIABLE


def test_segmenter_interface(segmenter, heldout):
  images = heldout[0][:5]
  seg = models.Segmenter(segmenter.config, segmenter.params, batch_size=2)
  labels = seg(images)  # 5 images in padded chunks of 2.
  assert labels.shape == (5, 64, 64) and labels.dtype == np.uint8
  assert labels.max() < parts.NUM_PARTS
  np.testing.assert_array_equal(labels[4:], seg.segment(images[4:]))
  u8 = np.round((images[:2] + 1) * 127.5).astype(np.uint8)
  assert (seg(u8) == labels[:2]).mean() > 0.999
  logits = seg.logits(images[:1])
  assert logits.shape == (1, 64, 64, parts.NUM_PARTS)
  assert logits.dtype == np.float32
  np.testing.assert_array_equal(logits.argmax(-1), labels[:1])
  # Other sizes are resized to 64 px and back.
  assert seg(images[:2, ::2, ::2]).shape == (2, 32, 32)


def test_classifier_interface(classifier, heldout):
  images = heldout[0][:3]
  logits = classifier(images)
  assert logits.shape == (3, attributes.NUM_ATTRIBUTES)
  assert logits.dtype == np.float32
  feats = classifier.features(images)
  assert feats.shape == (3, classifier.config.feature_dim)
  assert feats.dtype == np.float32
  lg, ft = classifier.outputs(images)
  np.testing.assert_allclose(lg, logits, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(ft, feats, rtol=1e-5, atol=1e-5)
  assert classifier.attribute_names == attributes.ATTRIBUTE_NAMES
  bare = models.Classifier(classifier.config, classifier.params)
  assert bare.reliable().all()  # No stored metrics: nothing is excluded.


def test_module_level_entry_points(heldout):
  images = heldout[0][:2]
  assert models.segment(images).shape == (2, 64, 64)
  assert models.classify(images).shape == (2, attributes.NUM_ATTRIBUTES)
  assert models.features(images).shape[0] == 2


def test_save_load_roundtrip_and_errors(tmp_path):
  config = models.SegmenterConfig(widths=(4, 8), resolution=16)
  params = models.init_params(config, jax.random.key(0))
  models.save_model(tmp_path / "seg", config, params, extra={"note": 1})
  seg = models.load_segmenter(tmp_path / "seg")
  assert seg.config == config
  x = np.zeros((2, 16, 16, 3), np.float32)
  want = np.asarray(models.segment_labels(config, params, x))
  np.testing.assert_array_equal(seg(x), want)
  with pytest.raises(ValueError, match="expected 'classifier'"):
    models.load_classifier(tmp_path / "seg")
  with pytest.raises(FileNotFoundError):
    models.load_segmenter(tmp_path / "missing")
  # Params that do not fit the stored architecture are refused.
  meta = json.loads((tmp_path / "seg" / "config.json").read_text())
  meta["config"]["widths"] = [4, 16]
  (tmp_path / "seg" / "config.json").write_text(json.dumps(meta))
  with pytest.raises(ValueError, match="do not match"):
    models.load_segmenter(tmp_path / "seg")


def test_binary_targets_threshold_at_median():
  attrs = attributes.sample_attributes(np.arange(2000))
  y = models.binary_targets(attrs)
  assert set(np.unique(y)) == {0.0, 1.0}
  rates = y.mean(0)
  cont = ~attributes.BINARY
  np.testing.assert_allclose(rates[cont], 0.5, atol=0.05)
  np.testing.assert_array_equal(y[:, attributes.BINARY], attrs[:, attributes.BINARY])


def test_augment_identity_and_consistent_shift():
  images, labels, _ = th.render_batch(np.arange(3), resolution=16)
  key = jax.random.key(0)
  none = th.AugmentSettings(blur=0.0, noise=0.0, shift_prob=0.0)
  x, y = th.augment(key, images, labels, none)
  np.testing.assert_allclose(x, images)
  np.testing.assert_array_equal(y, labels)
  shift = th.AugmentSettings(blur=0.0, noise=0.0, shift_prob=1.0)
  x, y = map(np.asarray, th.augment(key, images, labels, shift))
  for i in range(3):  # Find the shift from the labels; the image matches it.
    ok = False
    for dy in (-1, 0, 1):
      for dx in (-1, 0, 1):
        want_y = np.roll(labels[i], (dy, dx), axis=(0, 1))
        want_x = np.roll(images[i], (dy, dx), axis=(0, 1))
        # Compare away from the border, where edge padding differs from roll.
        if np.array_equal(y[i, 1:-1, 1:-1], want_y[1:-1, 1:-1]) and np.allclose(x[i, 1:-1, 1:-1], want_x[1:-1, 1:-1]):
          ok = True
    assert ok
  x, _ = th.augment(key, images, None, th.AugmentSettings())
  assert x.shape == images.shape and x.dtype == np.float32


def test_roc_auc_matches_pairwise_count():
  rng = np.random.default_rng(0)
  scores = rng.integers(0, 5, size=(60, 3)).astype(float)  # Many ties.
  labels = rng.random((60, 3)) < 0.4
  auc = model_metrics.roc_auc(scores, labels)
  for j in range(3):
    pos, neg = scores[labels[:, j], j], scores[~labels[:, j], j]
    d = pos[:, None] - neg[None, :]
    want = ((d > 0) + 0.5 * (d == 0)).mean()
    assert auc[j] == pytest.approx(want)
  assert np.isnan(model_metrics.roc_auc(scores[:, 0], np.zeros(60)))


def test_iou_from_confusion():
  true = np.array([0, 0, 1, 1, 2])
  pred = np.array([0, 1, 1, 1, 0])
  conf = model_metrics.confusion_matrix(pred, true, 4)
  np.testing.assert_allclose(model_metrics.iou_per_class(conf)[:3], [1 / 3, 2 / 3, 0.0])
  assert np.isnan(model_metrics.iou_per_class(conf)[3])


def test_training_resumes_exactly(tmp_path, monkeypatch):
  config = models.SegmenterConfig(widths=(4, 8), resolution=16)
  settings = th.TrainSettings(steps=4, batch_size=2, class_weight_power=0.5)
  quiet = lambda s: None
  full = th.train_segmenter(settings, config, log=quiet)

  ckpt = tmp_path / "seg_train.npz"
  real_save = th._save_state

  def save_then_die(*args):
    real_save(*args)
    raise KeyboardInterrupt  # Killed right after the step-2 checkpoint.

  monkeypatch.setattr(th, "_save_state", save_then_die)
  with pytest.raises(KeyboardInterrupt):
    th.train_segmenter(settings, config, checkpoint=ckpt, checkpoint_every=2, log=quiet)
  monkeypatch.undo()
  lines = []
  resumed = th.train_segmenter(settings, config, checkpoint=ckpt, checkpoint_every=2, log=lines.append)
  assert "segmenter: resuming at step 2" in lines
  for a, b in zip(jax.tree_util.tree_leaves(full), jax.tree_util.tree_leaves(resumed)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
  with pytest.raises(ValueError, match="other settings"):
    th.train_segmenter(th.TrainSettings(steps=5, batch_size=2), config, checkpoint=ckpt, log=quiet)


def test_batched_pads_the_last_chunk_to_a_power_of_two():
  """Chunks of batch_size, the last padded to the next power of two (>= 8, <= batch_size); outputs unpadded."""
  shapes = []

  def fn(x):
    shapes.append(x.shape[0])
    return x.reshape(len(x), -1).sum(1), x[:, 0, 0]

  x = np.arange(96 * 2 * 2 * 3, dtype=np.float32).reshape(96, 2, 2, 3)
  s, first = models._batched(fn, x, 64)
  assert shapes == [64, 32] and s.shape == (96,) and first.shape == (96, 3)
  np.testing.assert_array_equal(s, x.reshape(96, -1).sum(1))
  np.testing.assert_array_equal(first, x[:, 0, 0])
  for n, want in ((5, [8]), (9, [16]), (70, [64, 8]), (100, [64, 64]), (1, [8])):
    shapes.clear()
    out = models._batched(fn, x[:n] if n <= 96 else np.concatenate([x, x[: n - 96]]), 64)[0]
    assert shapes == want and out.shape == (n,), (n, shapes)
  shapes.clear()
  models._batched(fn, x[:5], 4)  # batch_size below 8: never padded beyond it
  assert shapes == [4, 4]
