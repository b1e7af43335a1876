"""ToyFaces inversion evaluation: metrics with known answers, edit plan, tables, a tiny end-to-end run."""

import os
import subprocess
import sys

import numpy as np
import pytest

from ss_jax import GeneratorConfig
from ss_jax.inversion import codes as inversion_codes
from ss_jax.stylespace import manipulate, channels as stylespace
from ss_jax.stylegan2.config import style_layout
from ss_jax.toyfaces import attributes as attr_lib
from ss_jax.toyfaces.eval import edit_scores
from ss_jax.toyfaces.eval import inversion as ie
from ss_jax.toyfaces.eval import inversion_table
from ss_jax.toyfaces import parts, render

import tiny

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# 8px, two blocks: the inversion step compiles in seconds.
CFG = GeneratorConfig(z_dim=16, w_dim=16, img_resolution=8, channels=(16, 8), mapping_layers=2)
HAT = attr_lib.ATTRIBUTE_INDEX["hat"]
HAIR_COLOR = attr_lib.ATTRIBUTE_INDEX["hair_color"]


def mean_abs(x, y):
  """Stand-in perceptual distance (N,)."""
  return np.abs(np.asarray(x) - np.asarray(y)).mean(axis=(1, 2, 3))


# ---------------------------------------------------------------- reconstruction


def test_reconstruction_errors_known_values():
  rng = np.random.RandomState(0)
  x = rng.uniform(-1, 1, (5, 4, 4, 3)).astype(np.float32)
  same = ie.reconstruction_errors(x, x, mean_abs, batch_size=2)
  np.testing.assert_array_equal(same["mse"], 0)
  np.testing.assert_array_equal(same["perceptual"], 0)
  y = x + np.arange(5, dtype=np.float32)[:, None, None, None] * 0.1  # image i off by 0.1 i everywhere
  err = ie.reconstruction_errors(x, y, mean_abs, batch_size=2)  # batches of 2, 2, 1 keep the order
  np.testing.assert_allclose(err["mse"], (0.1 * np.arange(5)) ** 2, atol=1e-6)
  np.testing.assert_allclose(err["perceptual"], 0.1 * np.arange(5), atol=1e-6)
  assert ie.reconstruction_errors(x, y)["perceptual"] is None
  with pytest.raises(ValueError, match="equal"):
    ie.reconstruction_errors(x, y[:2])


def test_code_rms_z():
  layout = style_layout(CFG)
  c = stylespace.num_channels(layout)
  rng = np.random.RandomState(0)
  mean, std = rng.randn(c), rng.uniform(0.5, 2.0, c)
  std[3] = 0.0  # constant channel: skipped
  conv = stylespace.kind_mask(layout, False)
  s = np.tile(mean, (3, 1))
  s[1] += 2.0 * std  # 2 stds everywhere
  s[2, ~conv] += 100.0  # toRGB channels do not count
  np.testing.assert_allclose(ie.code_rms_z(s, mean, std, layout), [0.0, 2.0, 0.0], atol=1e-12)
  samples = mean + std * rng.randn(4000, c)
  assert ie.code_rms_z(samples, mean, std, layout).mean() == pytest.approx(1.0, abs=0.02)


# ---------------------------------------------------------------- toggles and edits


def test_toggle_directions_and_toggled_attributes():
  attrs = attr_lib.sample_attributes(np.arange(200))
  for a in (HAT, HAIR_COLOR):
    d = ie.toggle_directions(attrs, a)
    has = ie.present(attrs, a)
    np.testing.assert_array_equal(d, np.where(has, -1.0, 1.0))
    t = ie.toggled_attributes(attrs, a)
    np.testing.assert_array_equal(ie.present(t, a), ~has)  # every image changes side
    np.testing.assert_array_equal(np.delete(t, a, axis=1), np.delete(attrs, a, axis=1))  # nothing else moves
  np.testing.assert_array_equal(ie.toggled_attributes(attrs, HAT)[:, HAT], 1 - attrs[:, HAT])
  moved = ie.toggled_attributes(attrs, HAIR_COLOR)[:, HAIR_COLOR] - attrs[:, HAIR_COLOR]
  np.testing.assert_allclose(np.abs(moved), 0.5, rtol=1e-6)  # half of its [0, 1] range
  assert ((moved > 0) == (ie.toggle_directions(attrs, HAIR_COLOR) > 0)).all()
  np.testing.assert_array_equal(
    edit_scores.plan_directions(attrs, [_edit(HAT), _edit(HAIR_COLOR)])[1], ie.toggle_directions(attrs, HAIR_COLOR)
  )
  logits = np.zeros((3, attr_lib.NUM_ATTRIBUTES))
  logits[:, HAT] = [-1.0, 2.0, 0.0]
  np.testing.assert_array_equal(edit_scores.decision_directions(logits, [_edit(HAT)]), [[1, -1, 1]])


def _edit(attribute, channels=(0,), signs=(1,)):
  return ie.Edit(
    attribute,
    attr_lib.ATTRIBUTE_NAMES[attribute],
    tuple(channels),
    tuple(str(c) for c in channels),
    tuple(signs),
    (1.0,) * len(channels),
    tuple(attr_lib.ATTRIBUTES[attribute].parts),
  )


def test_edit_styles_moves_only_the_channels():
  s = np.random.RandomState(0).randn(3, 10).astype(np.float32)
  std = np.linspace(0.5, 2.0, 10)
  e = _edit(HAT, channels=(2, 7), signs=(1, -1))
  out = ie.edit_styles(s, e, std, 4.0, [1, -1, 0.5])
  expect = s.copy()
  expect[:, 2] += np.array([1, -1, 0.5]) * 4.0 * std[2]
  expect[:, 7] -= np.array([1, -1, 0.5]) * 4.0 * std[7]
  np.testing.assert_allclose(out, expect, rtol=1e-6)
  np.testing.assert_array_equal(ie.edit_styles(s, e, std, 0.0, [1, 1, 1]), s)
  assert e == ie.Edit.from_dict(e.to_dict()) and "hat" in e.parts
  with pytest.raises(ValueError, match="directions"):
    ie.edit_styles(s, e, std, 1.0, [1, 1])


# ---------------------------------------------------------------- scores


def test_region_dilation_and_union():
  before = np.zeros((1, 5, 5), np.uint8)
  after = before.copy()
  before[0, 2, 2] = parts.PART_INDEX["hat"]
  after[0, 0, 4] = parts.PART_INDEX["glasses"]
  r = edit_scores.attribute_region(before, after, ("hat",), pixels=1)
  expect = np.zeros((5, 5), bool)
  expect[1:4, 1:4] = True
  np.testing.assert_array_equal(r[0], expect)
  r = edit_scores.attribute_region(before, after, ("hat", "glasses"), pixels=1)  # the edited image's part counts too
  expect[0:2, 3:5] = True
  np.testing.assert_array_equal(r[0], expect)
  assert not edit_scores.attribute_region(before, after, ("glasses",), pixels=1)[0, 4, 0]  # no wrap-around
  np.testing.assert_array_equal(edit_scores.attribute_region(before, after, ("hat",), pixels=0)[0], before[0] > 0)


def test_outside_change_and_pooled_share():
  before = np.zeros((3, 4, 4, 3), np.float32)
  region = np.zeros((3, 4, 4), bool)
  region[:, :2] = True  # top half
  after = before.copy()
  after[0, :2] = 0.5  # image 0: change only inside the region
  after[1, 2:, :, 0] = 1.0  # image 1: only outside
  # image 2: unchanged
  share, total = edit_scores.outside_change(before, after, region)
  np.testing.assert_allclose(share, [0.0, 1.0, 0.0])
  np.testing.assert_allclose(total, [8 * 3 * 0.5, 8 * 1.0, 0.0])
  assert edit_scores.pooled_share(share, total) == pytest.approx(8.0 / 20.0)
  assert np.isnan(edit_scores.pooled_share(share[2:], total[2:]))


def test_logit_effects_known_values():
  a = attr_lib.NUM_ATTRIBUTES
  before = np.zeros((2, a))
  std = np.full(a, 2.0)
  same = edit_scores.logit_effects(before, before, std, HAT, [1, -1])
  np.testing.assert_array_equal(same["target"], 0)
  np.testing.assert_array_equal(same["others"], 0)
  np.testing.assert_array_equal(same["flipped"], [False, True])  # logit 0 reads as "absent"
  after = before.copy()
  after[:, HAT] = 4.0  # +2 sigma
  after[:, 0] = -2.0  # another attribute: -1 sigma
  reliable = np.ones(a, bool)
  reliable[1] = False
  after[:, 1] = 100.0  # unreliable: ignored
  eff = edit_scores.logit_effects(before, after, std, HAT, [1, -1], reliable)
  np.testing.assert_allclose(eff["target"], [2.0, -2.0])
  np.testing.assert_array_equal(eff["flipped"], [True, False])
  np.testing.assert_allclose(eff["others"], 1.0 / (a - 2))  # mean over the 24 other reliable ones


def test_ground_truth_edit_is_local_with_exact_labels():
  x, labels, attrs = render.render(np.arange(ie.HELDOUT_SEED0, ie.HELDOUT_SEED0 + 16), 32)
  for a in (HAT, HAIR_COLOR, attr_lib.ATTRIBUTE_INDEX["mouth_open"]):
    x1, labels1 = render.render_attributes(ie.toggled_attributes(attrs, a), 32)
    share, total = edit_scores.outside_change(
      x, x1, edit_scores.attribute_region(labels, labels1, attr_lib.ATTRIBUTES[a].parts)
    )
    assert (total > 0).all()
    assert edit_scores.pooled_share(share, total) < 0.01  # measured: <= 0.002 (anti-aliasing beyond 1 px)


# ---------------------------------------------------------------- edit plan


def test_edit_plan_finds_a_planted_channel():
  layout = style_layout(CFG)
  c = stylespace.num_channels(layout)
  rng = np.random.RandomState(0)
  mean, std = rng.randn(c), rng.uniform(0.5, 2.0, c)
  bank = mean + std * rng.randn(300, c)
  logits = rng.randn(300, attr_lib.NUM_ATTRIBUTES)
  conv = np.flatnonzero(stylespace.kind_mask(layout, False))
  planted = int(conv[5])
  top = np.argsort(-logits[:, HAT])[:20]
  bank[top, planted] = mean[planted] - 3.0 * std[planted] + 0.1 * std[planted] * rng.randn(20)
  plan = ie.edit_plan(bank, logits, [HAT], mean, std, layout, num_exemplars=20, num_channels=2)
  assert len(plan) == 1 and plan[0].channels[0] == planted and plan[0].signs[0] == -1
  assert len(plan[0].channels) == 2 and plan[0].name == "hat" and plan[0].parts == ("hat",)
  assert plan[0].names[0] == stylespace.name_of(layout, planted)
  assert ie.attribute_indices("hat, glasses") == (HAT, attr_lib.ATTRIBUTE_INDEX["glasses"])
  with pytest.raises(ValueError, match="unknown attribute"):
    ie.attribute_indices("hat,beard")
  assert ie.check_methods("hybrid,w") == ("w", "hybrid")
  with pytest.raises(ValueError, match="unknown method"):
    ie.check_methods(["w", "z"])


# ---------------------------------------------------------------- tables


def _row(**kw):
  r = {
    "mse": 0.01234,
    "perceptual": 0.2,
    "fd_recon": 10.0,
    "target": 1.5,
    "flipped": 0.75,
    "others": 0.123,
    "outside": 0.25,
    "fd_edits": 20.04,
    "per_attribute": {"hat": {"target": 1.0, "flipped": 0.5, "others": 0.1, "outside": 0.0}},
  }
  r.update(kw)
  return r


def test_format_tables():
  rows = {"optimise W": _row(rms_z=2.345), "encoder (S)": _row(perceptual=None, outside=float("nan"))}
  text = inversion_table.format_table(rows, 4.0, "LPIPS alex")
  lines = text.splitlines()
  assert "LPIPS alex" in lines[0] and lines[1].count("|") == lines[0].count("|") == lines[2].count("|") == 10
  assert lines[2] == "| fresh renders (FD floor) | – | – | – | – | – | – | – | 4.0 |"
  assert lines[3] == "| optimise W | 0.0123 | 0.200 | 2.35 | 1.50 | 0.75 | 0.123 | 0.250 | 20.0 |"
  assert lines[4] == "| encoder (S) | 0.0123 | – | – | 1.50 | 0.75 | 0.123 | – | 20.0 |"
  assert len(inversion_table.format_table(rows).splitlines()) == 4  # no floor row
  assert inversion_table.format_table(rows, 4.0, fd_floor_std=0.25).splitlines()[2].endswith("| 4.0 ± 0.2 |")
  plan = [_edit(HAT)]
  per = inversion_table.format_attribute_table(rows, plan).splitlines()
  assert per[0] == "| method | hat (+0) |" and per[2] == "| optimise W | 1.00 / 0.50 / 0.00 |"
  pilot = inversion_table.format_pilot_table({"hat": rows["optimise W"]["per_attribute"]["hat"]}, plan).splitlines()
  assert pilot[2] == "| hat | 0 (1.0) | 1.00 | 0.50 | 0.100 | 0.000 |"


# ---------------------------------------------------------------- end to end on a tiny generator


class StandInClassifier:
  """logits: attribute k reads the mean of colour channel k % 3 (minus 0.1 k); features: 2x2-pooled pixels."""

  def outputs(self, x):
    x = np.asarray(x, np.float64)
    m = x.mean(axis=(1, 2))
    k = np.arange(attr_lib.NUM_ATTRIBUTES)
    logits = m[:, k % 3] - 0.1 * k
    n, h, w, c = x.shape
    feats = x.reshape(n, 2, h // 2, 2, w // 2, c).mean(axis=(2, 4)).reshape(n, -1)
    return logits, feats

  def classify(self, x):
    return self.outputs(x)[0]


def stand_in_segmenter(x):
  """Hat where red > 0, hair where green > 0 (else background)."""
  x = np.asarray(x)
  labels = np.zeros(x.shape[:3], np.uint8)
  labels[x[..., 1] > 0] = parts.PART_INDEX["hair"]
  labels[x[..., 0] > 0] = parts.PART_INDEX["hat"]
  return labels


class StandInEncoder:
  """encode -> the generator's S of w_avg plus a fixed per-image offset."""

  def __init__(self, g):
    self.base = np.asarray(inversion_codes.start_code(g, "s", 1))

  def encode(self, x):
    off = 0.01 * np.random.RandomState(0).randn(len(x), self.base.shape[1])
    return {"s": (self.base + off).astype(np.float32)}


def test_end_to_end_tiny():
  g = tiny.tiny_generator(0, CFG)
  targets, _, attrs = ie.heldout_renders(6, CFG.img_resolution)
  assert targets.shape == (6, 8, 8, 3) and targets.dtype == np.float32 and -1 <= targets.min() <= targets.max() <= 1
  spread = inversion_codes.latent_spread(g, num_samples=500)
  enc = StandInEncoder(g)
  outs = {
    m: ie.invert_method(g, m, targets, steps=3, hybrid_steps=2, perceptual=None, encoder=enc, spread=spread)
    for m in ("encoder", "hybrid")
  }  # one optimisation (hybrid = S from the encoder's start) keeps it fast
  for o in outs.values():
    assert o["styles"].shape == (6, g.num_style_channels) and o["images"].shape == targets.shape
  np.testing.assert_allclose(outs["encoder"]["styles"], enc.encode(targets)["s"])
  np.testing.assert_allclose(outs["hybrid"]["images"], manipulate.render(g, outs["hybrid"]["styles"], 64), atol=1e-4)
  assert np.abs(outs["hybrid"]["styles"] - outs["encoder"]["styles"]).max() > 0  # it optimised
  with pytest.raises(ValueError, match="needs an encoder"):
    ie.invert_method(g, "encoder", targets, steps=1, hybrid_steps=1)

  clf = StandInClassifier()
  bank = np.asarray(inversion_codes.start_code(g, "s", 1)) + np.random.RandomState(1).randn(64, g.num_style_channels)
  mean, std = bank.mean(0), bank.std(0)
  plan = ie.edit_plan(
    bank,
    np.random.RandomState(2).randn(64, attr_lib.NUM_ATTRIBUTES),
    [HAT, HAIR_COLOR],
    mean,
    std,
    g.layout,
    num_exemplars=8,
    num_channels=2,
  )
  logit_std = np.ones(attr_lib.NUM_ATTRIBUTES)
  d = edit_scores.plan_directions(attrs, plan)
  ref = clf.outputs(ie.heldout_renders(40, CFG.img_resolution, ie.REFERENCE_SEED0)[0])[1]

  hyb = outs["hybrid"]
  still = edit_scores.evaluate_edits(
    g, hyb["styles"], hyb["images"], d, plan, std, 0.0, clf, stand_in_segmenter, logit_std
  )
  np.testing.assert_allclose(still["edited"][0], hyb["images"], atol=1e-5)  # alpha 0: the reconstruction
  s0 = inversion_table.summarize_edits(still)
  assert s0["target"] == pytest.approx(0, abs=1e-5) and s0["others"] == pytest.approx(0, abs=1e-5)
  assert s0["num_edits"] == 12

  ev = edit_scores.evaluate_edits(
    g, hyb["styles"], hyb["images"], d, plan, std, 5.0, clf, stand_in_segmenter, logit_std
  )
  assert ev["edited"].shape == (2, 6, 8, 8, 3) and ev["features"].shape == (12, 12)
  assert np.abs(ev["edited"] - hyb["images"][None]).max() > 1e-3
  row = inversion_table.summarize(
    ie.reconstruction_errors(targets, hyb["images"], mean_abs),
    ev,
    ref,
    ie.code_rms_z(hyb["styles"], mean, std, g.layout),
  )
  assert row["rms_z"] > 0
  gt = edit_scores.evaluate_ground_truth(targets, attrs, plan, clf, stand_in_segmenter, logit_std)
  truth = inversion_table.summarize({"mse": np.zeros(6), "perceptual": np.zeros(6)}, gt, ref)
  for r in (row, truth):
    assert set(r["per_attribute"]) == {"hat", "hair_color"} and r["num_edits"] == 12 and r["num_images"] == 6
    assert all(np.isfinite(r[k]) for k in ("mse", "perceptual", "fd_recon", "target", "others", "fd_edits"))
    assert 0 <= r["outside"] <= 1 and 0 <= r["flipped"] <= 1
  assert row["mse"] > 0 and truth["mse"] == 0
  text = inversion_table.format_table({ie.GROUND_TRUTH: truth, ie.METHOD_LABELS["hybrid"]: row})
  assert "| encoder + optimise S |" in text and "| ground truth |" in text
  fig = inversion_table.figure(
    targets, {"hyb": hyb["images"]}, {"true": gt["edited"], "hyb": ev["edited"]}, plan, rows=3
  )
  assert fig.dtype == np.uint8 and fig.ndim == 3 and fig.shape[1] > 4 * 8 and fig.shape[0] > 3 * 8


def test_binary_refuses_bad_flags(tmp_path):
  p = subprocess.run(
    [sys.executable, "-m", "experiments.inversion_table", f"--workdir={tmp_path}", "--methods=w,z"],
    cwd=REPO,
    capture_output=True,
    text=True,
    timeout=120,
  )
  assert p.returncode != 0 and p.stderr.strip().splitlines()[-1].startswith("error: unknown method(s) ['z']")
  assert not any(tmp_path.iterdir())  # refused before writing anything
