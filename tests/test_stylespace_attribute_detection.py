"""Checking attribute channels: bank split, independent-bank accuracy curve, verified.json, edit scores."""

import json

import numpy as np
import pytest

from ss_jax import GeneratorConfig
from ss_jax.stylespace import attribute_channels as ac, attribute_detection as det, channels as stylespace
from ss_jax.stylegan2.config import style_layout

LAYOUT = style_layout(GeneratorConfig(z_dim=16, w_dim=16, img_resolution=16, channels=(16, 16, 8), mapping_layers=2))
C = stylespace.num_channels(LAYOUT)
PLANTED = LAYOUT[3].offset + 5  # conv channel '3_5'


def test_split_bank_is_disjoint_complete_and_seeded():
  ev, pool, ref = det.split_bank(101, 11, seed=4)
  assert (len(ev), len(pool), len(ref)) == (11, 45, 45)
  assert sorted(np.concatenate([ev, pool, ref]).tolist()) == list(range(101))
  for a, b in zip((ev, pool, ref), det.split_bank(101, 11, seed=4)):
    np.testing.assert_array_equal(a, b)
  assert not np.array_equal(det.split_bank(101, 11, seed=5)[1], pool)
  with pytest.raises(ValueError, match="too small"):
    det.split_bank(10, 8)


def test_strongest_rows():
  col = np.array([0.0, 5.0, -3.0, 2.0, 9.0])
  assert det.strongest(col, [0, 1, 2, 3], 2).tolist() == [1, 3]  # row 4 is not a candidate
  assert det.strongest(col, [0, 1, 2, 3], 2, largest=False).tolist() == [2, 0]
  with pytest.raises(ValueError, match="exemplars"):
    det.strongest(col, [0, 1], 3)


def _bank(planted_weight, n=4000, seed=0):
  """Styles ~ N(0, 1); logit = w * s[planted] + noise. Returns s, logit, pool rows, reference rows."""
  rng = np.random.default_rng(seed)
  s = rng.standard_normal((n, C))
  logit = planted_weight * s[:, PLANTED] + rng.standard_normal(n)
  _, pool, ref = det.split_bank(n, 0, seed)
  return s, logit, pool, ref


def test_planted_channel_is_found_against_an_independent_bank():
  s, logit, pool, ref = _bank(1.0)
  mask = ac.candidate_mask(LAYOUT)
  cur = det.accuracy_curve(
    s[det.strongest(logit, pool, 200)],
    s[det.strongest(logit, ref, 200)],
    np.zeros(C),
    np.ones(C),
    mask,
    sizes=(2, 5, 20, 100, 400),
    num_draws=50,
    seed=1,
  )
  assert cur["reference"] == PLANTED and cur["pool_top"] == PLANTED
  assert cur["sizes"].tolist() == [2, 5, 20, 100]  # 400 > pool size: dropped
  acc = cur["accuracy"]
  assert acc[0] < 0.8 and acc[-1] == 1.0 and np.all(np.diff(acc) >= -0.05)
  again = det.accuracy_curve(
    s[det.strongest(logit, pool, 200)],
    s[det.strongest(logit, ref, 200)],
    np.zeros(C),
    np.ones(C),
    mask,
    sizes=(2, 5, 20, 100),
    num_draws=50,
    seed=1,
  )
  np.testing.assert_array_equal(again["top"], cur["top"])


def test_without_a_controlling_channel_the_last_point_is_not_one():
  """Logit independent of S: the self-resampling curve still ends at 1.0, the independent one does not."""
  s, logit, pool, ref = _bank(0.0)
  mask = ac.candidate_mask(LAYOUT)
  pool_s, ref_s = s[det.strongest(logit, pool, 100)], s[det.strongest(logit, ref, 100)]
  cur = det.accuracy_curve(pool_s, ref_s, np.zeros(C), np.ones(C), mask, sizes=(2, 10, 50), num_draws=50)
  assert cur["accuracy"][-1] < 0.5
  self_curve = ac.resampling_curve(pool_s, np.zeros(C), np.ones(C), LAYOUT, sizes=[2, 10, 100], num_draws=5)
  assert self_curve["agreement"][-1] == 1.0  # by construction


def test_restriction_to_local_channels_can_only_pick_candidates():
  s, logit, pool, ref = _bank(0.3)
  local = ac.candidate_mask(LAYOUT, restrict_to=["3_5", "3_6", "2_0"])
  cur = det.accuracy_curve(
    s[det.strongest(logit, pool, 100)],
    s[det.strongest(logit, ref, 100)],
    np.zeros(C),
    np.ones(C),
    local,
    sizes=(2, 10, 50),
    num_draws=50,
  )
  assert cur["reference"] == PLANTED and set(cur["top"].ravel()) <= set(np.flatnonzero(local))
  full = det.accuracy_curve(
    s[det.strongest(logit, pool, 100)],
    s[det.strongest(logit, ref, 100)],
    np.zeros(C),
    np.ones(C),
    ac.candidate_mask(LAYOUT),
    sizes=(2, 10, 50),
    num_draws=50,
  )
  assert np.all(cur["accuracy"] >= full["accuracy"])  # fewer distractors


def test_verified_channels_reads_the_detect_local_format(tmp_path):
  path = tmp_path / "verified.json"
  path.write_text(
    json.dumps(
      {
        "categories": [
          {"category": "hair", "verified": [{"name": "6_113", "score": 0.9}, {"name": "3_4"}]},
          {"category": "eyebrow", "verified": [{"name": "3_4"}, {"name": "10_2"}]},
          {"category": "mouth", "verified": []},
        ]
      }
    )
  )
  assert det.verified_channels(path, ["hair", "eyebrow"]) == (["3_4", "6_113", "10_2"], "verified")
  assert det.verified_channels(path, ["mouth", "nose"]) == ([], "verified")
  (tmp_path / "detections.json").write_text(
    json.dumps(
      {
        "categories": [  # detect_local's own output
          {"category": "hair", "detected": [{"name": "2_1"}], "top": [{"name": "9_9"}]}
        ]
      }
    )
  )
  assert det.verified_channels(tmp_path / "detections.json", ["hair"]) == (["2_1"], "detected")
  (tmp_path / "bad.json").write_text(json.dumps([{"category": "hair"}]))
  with pytest.raises(ValueError, match="categories"):
    det.verified_channels(tmp_path / "bad.json", ["hair"])
  with pytest.raises(FileNotFoundError):
    det.verified_channels(tmp_path / "none.json", ["hair"])


def test_edited_styles_moves_one_column_per_channel():
  s = np.arange(12, dtype=np.float32).reshape(3, 4)
  std = np.array([1.0, 2.0, 3.0, 4.0])
  e = det.edited_styles(s, [1, 3], [1.0, -1.0], [0.5, 2.0], std)
  assert e.shape == (2, 2, 3, 4)
  want = s.copy()
  want[:, 3] -= 2.0 * 4.0
  np.testing.assert_array_equal(e[1, 1], want)
  want = s.copy()
  want[:, 1] += 0.5 * 2.0
  np.testing.assert_array_equal(e[0, 0], want)


def test_edit_metrics_by_hand():
  base = np.array([[-1.0, 0.0, 0.0], [1.0, 0.0, 0.0], [-2.0, 0.0, 0.0], [0.5, 0.0, 0.0]])
  edited = base.copy()[None]
  edited[0, :, 0] += [2.0, 2.0, 1.0, 2.0]  # image 0 crosses, image 2 does not
  edited[0, :, 1] += [1.0, -3.0, 0.0, 0.0]
  edited[0, :, 2] += [0.5, 0.0, 0.0, 2.0]
  std = np.array([2.0, 1.0, 1.0])
  m = det.edit_metrics(base, edited, 0, 1.0, std, np.array([True, True, True]))
  np.testing.assert_allclose(m["target"], [np.mean([1.0, 1.0, 0.5, 1.0])])
  np.testing.assert_allclose(m["flips"], [0.5])  # 2 images below 0, 1 crosses
  np.testing.assert_allclose(m["leak_max"], [np.mean([1.0, 3.0, 0.0, 2.0])])
  np.testing.assert_allclose(m["leak_mean"], [np.mean([0.75, 1.5, 0.0, 1.0])])
  assert m["leak_attr"].tolist() == [1] and m["leak_attr_std"][0] == pytest.approx(1.0)
  m = det.edit_metrics(base, edited, 0, 1.0, std, np.array([True, False, True]))  # attr 1 unreliable
  np.testing.assert_allclose(m["leak_max"], [np.mean([0.5, 0.0, 0.0, 2.0])])
  neg = det.edit_metrics(base, edited, 0, -1.0, std, np.ones(3, bool))  # exemplars have LOW logits
  np.testing.assert_allclose(neg["target"], -m["target"])
  np.testing.assert_allclose(neg["flips"], [0.0])


def test_single_channel_verdict():
  m = {
    "target": np.array([[0.5, 2.0], [1.5, 3.0]]),
    "flips": np.array([[0.9, 0.9], [0.6, np.nan]]),
    "leak_max": np.array([[0.0, 1.5], [0.3, 0.1]]),
  }
  assert det.single_channel_verdict(m) == (1, 0)  # (0,0) too weak, (0,1) leaks, (1,1) no flips
  m["leak_max"][1, 0] = 1.0
  assert det.single_channel_verdict(m) is None
