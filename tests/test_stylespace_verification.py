"""Verification by editing, the gradient-mass score, verified.json and the ground-truth comparison."""

import json

import numpy as np
import pytest

from ss_jax.stylespace import detection_scores as ds
from ss_jax.stylespace import detection_stats
from ss_jax.stylespace import ground_truth, locally_active as la, manipulate, segmentation, channels as stylespace
from ss_jax.stylegan2 import sampling
from ss_jax.stylespace.gradmaps import storage
from ss_jax.runtime import images, jobs
from ss_jax.stylespace import verification as V
from ss_jax.stylespace import verified_detection as vd
from test_stylespace_locally_active import _run, tiny_generator


def _halves(seeds, index, u8):
  """Stand-in segmenter that depends on the image: skin (1) where the red channel is bright, hair (17) else."""
  return np.where(u8[..., 0] > 127, 1, 17).astype(np.int32)


def test_edit_measures_match_loops():
  rng = np.random.RandomState(0)
  b, a, h, w, k = 2, 2, 5, 4, 3
  before = rng.randint(0, 256, (b, h, w, 3)).astype(np.uint8)
  after = np.clip(before[:, None].astype(int) + rng.randint(-30, 31, (b, a, h, w, 3)), 0, 255).astype(np.uint8)
  cb, ca = rng.randint(0, k, (b, h, w)), rng.randint(0, k, (b, a, h, w))
  got = V.edit_measures(before, cb, after, ca, k, visible=0.1)
  for i in range(b):
    for j in range(a):
      d = np.abs(after[i, j].astype(float) - before[i].astype(float)) / 127.5
      vis = d.max(-1) > 0.1
      assert got["vis_total"][i, j] == vis.sum()
      np.testing.assert_allclose(got["l1_total"][i, j], d.sum(), rtol=1e-5)
      for c in range(k):
        reg = (cb[i] == c) | (ca[i, j] == c)
        np.testing.assert_allclose(got["l1_in"][i, j, c], d.sum(-1)[reg].sum(), rtol=1e-5)
        assert got["vis_in"][i, j, c] == vis[reg].sum()


def test_summarize_and_rule():
  # One channel, 2 images, 1 alpha, 2 categories; category 1 absent in image 1.
  d = {
    "l1_in": np.array([[[[3.0, 1.0]], [[2.0, 0.0]]]]),
    "l1_total": np.array([[[4.0], [4.0]]]),
    "vis_in": np.array([[[[6, 2]], [[0, 0]]]]),
    "vis_total": np.array([[[8], [0]]]),
    "present": np.array([[[True, True], [True, False]]]),
  }
  s = V.summarize(d, num_pixels=100)
  np.testing.assert_allclose(s["l1_share_mean"], [[(0.75 + 0.5) / 2, 0.25]])
  np.testing.assert_allclose(s["vis_share_mean"], [[0.75 / 2, 0.25]])  # no visible change: share 0
  np.testing.assert_allclose(s["changed_mean"], [[0.04, 0.08]])
  np.testing.assert_array_equal(s["n_images"], [[2, 1]])
  np.testing.assert_allclose(s["l1_share_std"][0, 0], 0.125)
  np.testing.assert_array_equal(V.verified_mask(s, 0.3, 0.01), [[True, False]])
  np.testing.assert_array_equal(V.verified_mask(s, 0.3, 0.05), [[False, False]])


def test_job_matches_manipulate_and_resumes(tmp_path):
  g = tiny_generator()
  table = segmentation.FFHQ
  considered = stylespace.considered_indices(g.layout)
  sigma = np.linspace(0.5, 1.5, g.num_style_channels)
  args = (g, considered, sigma, [5, 6, 7], {"segmenter": "halves"}, table)
  with pytest.raises(ValueError, match="overlap"):
    V.make_job(tmp_path / "x", *args, forbidden_seeds=range(6))
  job = V.make_job(tmp_path / "a", *args, alphas=(-3.0, 3.0))
  V.run_job(job, g, _halves, [0, 5], rows_per_step=6)
  assert job.done(0) and job.done(5) and not job.done(1)

  def broken(seeds, index, u8):  # the edits' labels fail (their host work runs on a helper thread)
    if len(u8) > 3:
      raise ValueError("segmenter broke")
    return _halves(seeds, index, u8)

  with pytest.raises(ValueError, match="segmenter broke"):
    V.run_job(job, g, broken, [1, 2], rows_per_step=6)
  assert not job.done(1) and not job.done(2)
  V.run_job(job, g, _halves, range(len(considered)), rows_per_step=6)  # resume after a partial run
  for proc in (1, 0):  # two processes' round-robin shares (each over this process's 4 fake devices)
    ref = V.make_job(tmp_path / "b", *args, alphas=(-3.0, 3.0))
    ref = jobs.ShardedJob(
      tmp_path / "b",
      ref.dir.name,
      {k: v for k, v in ref.spec.items() if k != "num_shards"},
      ref.num_shards,
      process_index=proc,
      process_count=2,
    )
    assert V.run_job(ref, g, _halves, range(len(considered)), rows_per_step=6) == len(ref.mine())
  for p in range(len(considered)):
    x, y = job.read(p), ref.read(p)
    assert all(np.array_equal(x[key], y[key]) for key in x), p
  # Independent path: manipulate.edited_images + numpy.
  styles = sampling.styles_from_seeds(g, [5, 6, 7], 0.7)
  p = 7
  raw = manipulate.edited_images(g, styles, [int(considered[p])], [-3.0, 3.0], sigma)
  u8 = images.to_uint8(raw)  # (A, N, H, W, C)
  base = images.to_uint8(manipulate.render(g, styles))
  d = np.abs(u8.astype(float) - base[None].astype(float)) / 127.5
  got = job.read(p)
  np.testing.assert_allclose(got["l1_total"], d.sum((2, 3, 4)).T, rtol=1e-4, atol=1e-4)
  np.testing.assert_array_equal(got["vis_total"], (d.max(-1) > 0.1).sum((2, 3)).T)
  cat_b = table.merge(_halves(None, None, base))
  np.testing.assert_array_equal(got["present"], [[(c == k).any() for k in range(11)] for c in cat_b])


def test_mass_shares_and_rule():
  cats = np.zeros((1, 2, 2), int)
  cats[0, 0, 0] = 1
  maps = np.array([[[[3.0, 1.0], [0.0, 0.0]], [[0.0, 0.0], [0.0, 0.0]]]])
  st = detection_stats.accumulate(maps, cats, 3)  # the sums the mass rule reads
  np.testing.assert_allclose(st.mass_share_sum, [[0.25, 0.75, 0.0], [0.0, 0.0, 0.0]])
  np.testing.assert_allclose(st.area_share_sum, [0.75, 0.25, 0.0])
  np.testing.assert_allclose(st.mean_area_share(), [0.75, 0.25, 0.0])
  mass = np.array([[0.2, 0.8], [0.6, 0.4], [0.5, 0.5]])
  area = np.array([0.7, 0.3])
  # excess = (mass - area) / (1 - area): category 1 -> 0.714, 0.143, 0.286; category 0 all below 0.
  np.testing.assert_allclose(ds.mass_excess(mass, area)[:, 1], [0.5 / 0.7, 0.1 / 0.7, 0.2 / 0.7])
  np.testing.assert_array_equal(ds.select_mass(mass, area, 1, 0.5)[0], [0])
  np.testing.assert_array_equal(ds.select_mass(mass, area, 1, 0.2)[0], [0, 2])
  np.testing.assert_array_equal(ds.select_mass(mass, area, 0, 0.0)[0], [])
  frac = np.array([[0.0, 0.0], [0.9, 0.0], [0.0, 0.0]])  # the paper's rule: channel 1 for category 0
  got = ds.detect("union", frac, mass, area, mass_threshold=0.2)
  assert {k: v.tolist() for k, v in got.items()} == {0: [1], 1: [0, 2]}
  assert {k: v.tolist() for k, v in ds.detect("official", frac).items()} == {0: [1], 1: []}
  with pytest.raises(ValueError, match="unknown score"):
    ds.detect("best", frac, mass, area)
  p, r, f1, n, t = ds.precision_recall([1, 1, 0, 0], [1, 0, 1, 0])
  assert (p, r, f1, n, t) == (0.5, 0.5, 0.5, 2, 2)


def test_verified_json_end_to_end(tmp_path):
  g = tiny_generator()
  (_, _), gm, job = _run(tmp_path, g)
  result, _ = vd.finalize(job, gm, "mass", mass_threshold=0.05)
  assert json.loads((job.dir / "detections.json").read_text())["settings"]["score"] == "mass"
  assert all("mass" in e and "average_channel_win_rate" in c for c in result["categories"] for e in c["detected"])
  official, _ = vd.finalize(job, gm, "official", threshold=0.3, margin=0.1)
  assert official == json.loads((job.dir / "detections.json").read_text())
  assert [[e["name"] for e in c["detected"]] for c in official["categories"]] == [
    [e["name"] for e in c["detected"]] for c in la.finalize(job, gm, threshold=0.3, margin=0.1)[0]["categories"]
  ]
  table = segmentation.FFHQ
  with pytest.raises(ValueError, match="overlap"):
    vd.make_verify_job(tmp_path, gm, g, {"segmenter": "halves"}, table, [3, 100])
  with pytest.raises(ValueError, match="share seeds"):
    vd.make_verify_stages(tmp_path, gm, g, {"segmenter": "halves"}, table, [[100, 101], [101, 102]])
  vjob = vd.make_verify_stages(tmp_path, gm, g, {"segmenter": "halves"}, table, [[100, 101], [102]], (-5.0, 5.0))
  assert vjob[0].dir == vd.make_verify_job(tmp_path, gm, g, {"segmenter": "halves"}, table, [100, 101], (-5, 5)).dir
  out = vd.verify(job, gm, result, g, _halves, vjob, min_share=0.3, min_changed=0.0, baseline_per_layer=2)
  assert json.loads((job.dir / "verified.json").read_text()) == json.loads(json.dumps(out))
  assert out["settings"]["more_seeds"] == [vd.locally_active._seed_summary([102])]
  entries = [e for c in out["categories"] for e in c["verified"] + c["rejected"]]
  assert {e["stages"] for e in entries} <= {1, 2} and all(e["n_images"] <= 3 for e in entries)
  for e in entries:  # open: the CI still contains min_share (0.3); away from rounding at the boundary
    gap = abs(e["vis_share"]["mean"] - 0.3) - e["vis_share"]["ci95"]
    if abs(gap) > 1e-4 and e["n_images"]:
      assert e["open"] == (gap < 0), e
  assert [c["category"] for c in out["categories"]] == list(table.categories)
  detected_for = {}
  for d in result["categories"]:
    for e in d["detected"]:
      detected_for.setdefault(e["position"], []).append(d["category"])
  for c, d in zip(out["categories"], result["categories"]):
    own = [e for e in c["verified"] if e["detected"]]
    assert len(own) + len(c["rejected"]) == len(d["detected"]) and all(e["detected"] for e in c["rejected"])
    assert sorted(e["name"] for e in own + c["rejected"]) == sorted(e["name"] for e in d["detected"])
    for e in c["verified"]:  # confident rule (default): the CI's lower end reaches min_share
      assert e["vis_share"]["mean"] - e["vis_share"]["ci95"] >= 0.3 - 1e-5
      assert "ci95" in e["changed"] and "ci95" in e["l1_share"]
    found = [e for e in c["verified"] if not e["detected"]]  # any_category: detected elsewhere, verified here
    assert c["found_by_editing"] == len(found)
    for e in found:
      assert c["category"] not in e["detected_as"] and e["detected_as"] == detected_for[e["position"]]
  assert sum(c["found_by_editing"] for c in out["categories"]) > 0  # this set-up has some: the test can fail
  assert any(c["baseline"] for c in out["categories"])
  own_only = vd.verify(job, gm, result, g, _halves, vjob, 0.3, 0.0, baseline_per_layer=2, any_category=False)
  assert not own_only["settings"]["any_category"] and out["settings"]["any_category"]
  for c, d in zip(own_only["categories"], result["categories"]):
    assert c["found_by_editing"] == 0 and len(c["verified"]) + len(c["rejected"]) == len(d["detected"])
  # The oracle comparison on these numbers: the verified set is a subset of the detections.
  c = len(storage.job_layout(gm)[1])
  truth = np.zeros((c, 11), bool)
  truth[:3, 10] = True
  half = truth.copy()
  half[0, 10] = False
  half[5, 0] = half[6, 0] = True  # two claims where nothing is local
  rows = ground_truth.compare(truth, {"r": truth.copy(), "half": half, "none": np.zeros_like(truth)}, table.categories)
  assert rows[10]["r"]["precision"] == 1.0 and rows[10]["none"]["claimed"] == 0
  np.testing.assert_allclose([rows[10]["half"]["precision"], rows[10]["half"]["recall"]], [1.0, 2 / 3])
  assert "| hair | 3 |" in ground_truth.markdown(rows, ["r", "none"])
  assert dict((c, ok) for c, ok, _ in ground_truth.targets(rows, "r"))["hair"]
  t = dict((c, ok) for c, ok, _ in ground_truth.targets(rows, "half"))
  assert t["hair"] and not t["others"] and t["skin"]  # recall 2/3 >= 0.5; 2 claims > 1
  assert not dict((c, ok) for c, ok, _ in ground_truth.targets(rows, "none"))["hair"]


def test_l1_shares_agree_with_toyfaces_evaluate():
  """With unchanged labels, the L1 shares equal ss_jax.toyfaces.evaluate.locality_shares (the edit scorer)."""
  from ss_jax.toyfaces import evaluate, parts, segmenter

  rng = np.random.RandomState(1)
  before = rng.randint(0, 256, (3, 8, 8, 3)).astype(np.uint8)
  after = rng.randint(0, 256, (3, 1, 8, 8, 3)).astype(np.uint8)
  labels = rng.randint(0, len(parts.PART_NAMES), (3, 8, 8))
  table = segmenter.toyfaces_table()
  cats = table.merge(labels)
  got = V.edit_measures(before, cats, after, cats[:, None], table.num_categories)
  names, shares, _ = evaluate.locality_shares(before, after[:, 0], labels)
  mine = got["l1_in"][:, 0] / got["l1_total"][:, :1]
  for j, name in enumerate(names):
    np.testing.assert_allclose(mine[:, table.categories.index(name)], shares[:, j], rtol=1e-5, atol=1e-7)


def test_run_stages_measures_open_verdicts_on_more_seeds(tmp_path):
  """Sequential stages: stage 2 only for channels whose CI contains min_share; pooled = one job on all seeds."""
  g = tiny_generator()
  table = segmentation.FFHQ
  considered = stylespace.considered_indices(g.layout)
  sigma = np.linspace(0.5, 1.5, g.num_style_channels)
  args = (g, considered, sigma)
  kw = dict(alphas=(-3.0, 3.0), source={"segmenter": "halves"}, table=table)
  stages = [V.make_job(tmp_path, *args, s, name=f"s{j}", **kw) for j, s in enumerate(([5, 6, 7], [8, 9]))]
  pos = np.arange(6)
  ref = V.make_job(tmp_path, *args, [5, 6, 7, 8, 9], name="all", **kw)
  V.run_job(ref, g, _halves, pos, rows_per_step=10)
  V.run_job(stages[0], g, _halves, pos)
  npix = g.config.img_resolution**2
  first = V.summarize(V.load(stages[0], pos), npix)
  share = float(np.median(first["vis_share_mean"][first["changed_mean"] > 0]))  # opens some verdicts
  want = V.undecided(first, share, 0.0)
  wanted = np.zeros_like(want)
  wanted[:, 0] = wanted[:, 10] = True  # skin and hair verdicts matter
  summ, depth = V.run_stages(stages, g, _halves, pos, wanted, share, 0.0, rows_per_step=6)
  open_ = (want & wanted).any(1)
  assert open_.any() and not open_.all()
  np.testing.assert_array_equal(depth, np.where(open_, 2, 1))
  assert [stages[1].done(p) for p in pos] == open_.tolist()
  pooled = V.summarize(V.load(ref, pos), npix)
  for key in summ:
    np.testing.assert_allclose(summ[key][open_], pooled[key][open_], atol=1e-6, err_msg=key)
    np.testing.assert_allclose(summ[key][~open_], first[key][~open_], atol=1e-6, err_msg=key)
  assert (summ["n_images"][open_].max(1) == 5).all() and (summ["n_images"][~open_].max(1) == 3).all()
  conf = V.verified_mask(summ, share, 0.0, confident=True)
  assert (conf <= V.verified_mask(summ, share, 0.0)).all()
  np.testing.assert_array_equal(conf, (summ["vis_share_mean"] - summ["vis_share_ci"] >= share) & (summ["n_images"] > 0))


def test_oracle_labels_and_decided_scoring():
  # 4 channels, 1 category: local, local but undecided, non-local, non-local but undecided.
  osum = {
    "vis_share_mean": np.array([[0.9], [0.55], [0.1], [0.45]]),
    "vis_share_ci": np.array([[0.05], [0.1], [0.05], [0.1]]),
    "changed_mean": np.full((4, 1), 0.01),
    "n_images": np.full((4, 1), 12.0),
  }
  truth, decided = ground_truth.oracle_labels(osum, 0.001)
  np.testing.assert_array_equal(truth[:, 0], [True, True, False, False])
  np.testing.assert_array_equal(decided[:, 0], [True, False, True, False])
  claimed = np.array([[True], [True], [False], [True]])
  full = ground_truth.compare(truth, {"r": claimed}, ["hair"])[0]
  dec = ground_truth.compare(truth, {"r": claimed}, ["hair"], decided)[0]
  assert (full["truly_local"], full["r"]["claimed"], full["r"]["precision"]) == (2, 3, 2 / 3)
  assert (dec["truly_local"], dec["undecided"], dec["r"]["claimed"], dec["r"]["claimed_undecided"]) == (1, 2, 1, 2)
  assert dec["r"]["precision"] == 1.0 and dec["r"]["recall"] == 1.0
  assert "| hair | 1 | 2 | 1 (+2) / 1.00 / 1.00 / 1.00 |" in ground_truth.markdown([dec], ["r"])
  # Where nothing is decided local, undecided claims count against "at most one claim".
  none = ground_truth.compare(np.zeros((4, 1), bool), {"r": claimed}, ["ear"], decided)
  assert ground_truth.targets(none, "r") == [("ear", False, "3 claimed (<= 1)")]


def test_split_choice_picks_on_even_and_scores_on_odd():
  truth = np.zeros((8, 1), bool)
  truth[:6, 0] = True  # 3 local channels in each half
  good_even = truth.copy()
  good_even[[1, 3, 5], 0] = False  # perfect on the even positions, misses every odd one
  rules = {"a": good_even, "b": np.ones((8, 1), bool)}  # b: precision 0.75 on each half
  out = ground_truth.split_choice(truth, rules, ["hair"], ["a", "b"])
  assert out["chosen"] == "a"
  assert out["even"][0]["a"]["precision"] == 1.0 and out["even"][0]["a"]["recall"] == 1.0
  assert out["odd"][0]["truly_local"] == 3 and out["odd"][0]["a"]["claimed"] == 0
  assert out["odd"][0]["b"]["precision"] == 0.75
