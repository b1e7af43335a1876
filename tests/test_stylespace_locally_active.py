"""Locally-active channel scoring, decision rule, streaming and the resumable jobs."""

import numpy as np
import pytest

from ss_jax import Generator, GeneratorConfig
from ss_jax.stylespace import detection_stats as ds, locally_active as la, segmentation
from ss_jax.stylespace.gradmaps import storage
from ss_jax.stylegan2.config import style_layout

import tiny
from gradmap_reference import run_gradient_maps

CFG = GeneratorConfig(z_dim=8, w_dim=8, img_resolution=8, channels=(4, 4), mapping_layers=2)


def tiny_generator(seed=0, cfg=CFG):
  return tiny.tiny_generator(seed, cfg)


def reference_stats(maps, cats, k, d):
  """Loop version of the per-image rule (percentile-free: the area largest cells, stable)."""
  n_img, c = maps.shape[:2]
  wins, present = np.zeros((c, k), int), np.zeros(k, int)
  for i in range(n_img):
    lab = cats[i].ravel()
    area = np.bincount(lab, minlength=k)
    present += area > 0
    for ch in range(c):
      m = maps[i, ch].ravel()
      order = sorted(range(m.size), key=lambda j: (-m[j], j))
      scores = np.full(k, -np.inf)
      for cat in np.flatnonzero(area):
        top = [j for j in order[: area[cat]] if m[j] > 0]
        scores[cat] = np.sum(lab[top] == cat) / area[cat] ** d
      if scores.max() > 0:
        wins[ch, np.argmax(scores)] += 1
  return wins, present


def test_concentrated_map_wins_its_region():
  cats = np.zeros((1, 4, 4), int)
  cats[0, :2, :2] = 1  # category 1: top-left quadrant; 0: the rest
  maps = np.full((1, 2, 4, 4), 0.01, np.float32)
  maps[0, 0, :2, :2] = 1.0  # channel 0 lives on region 1
  maps[0, 1, 2:, :] = 1.0  # channel 1 lives on region 0
  n, area = ds.overlap_counts(maps, cats, 3)
  np.testing.assert_array_equal(area, [[12, 4, 0]])
  # Channel 1: its 8 hot cells + the first 4 cold cells in row-major order (2 of them in region 1).
  np.testing.assert_array_equal(n[0], [[8, 4, 0], [10, 0, 0]])
  s = ds.overlap_scores(n, area, 2.0)
  assert np.isnan(s[0, :, 2]).all()  # absent category
  np.testing.assert_array_equal(ds.winners(s), [[1, 0]])


def test_discount_prefers_small_regions():
  cats = np.zeros((1, 4, 4), int)
  cats[0, 0] = 1  # small region: 4 cells; big region: 12 cells
  m = np.zeros((4, 4), np.float32)
  m[0] = [1.0, 1.0, 0.05, 0.05]  # half of the small region is hot
  m[1:] = 0.9
  m[3, 1:] = 0.01  # 9 of the 12 big-region cells are warm
  n, area = ds.overlap_counts(m[None, None], cats, 2)
  np.testing.assert_array_equal(n[0, 0], [9, 2])
  got = {d: int(ds.winners(ds.overlap_scores(n, area, d))[0, 0]) for d in (0.0, 1.0, 2.0)}
  assert got == {0.0: 0, 1.0: 0, 2.0: 1}


def test_ties_and_zero_maps():
  cats = np.array([[[0, 1], [1, 1]]])
  flat = np.ones((1, 1, 2, 2), np.float32)  # all tied: the top-k cells are the first k (row-major)
  n, _ = ds.overlap_counts(flat, cats, 2)
  np.testing.assert_array_equal(n[0, 0], [1, 2])
  zero = np.zeros((1, 1, 2, 2), np.float32)  # zero cells never count -> no winner
  n, area = ds.overlap_counts(zero, cats, 2)
  assert n.sum() == 0 and ds.winners(ds.overlap_scores(n, area))[0, 0] == -1
  tie = np.array([[[1.0, 1.0]]])  # equal scores -> lowest category id
  assert ds.winners(tie)[0, 0] == 0


def test_vectorised_matches_loop_and_streaming_matches_batch():
  rng = np.random.RandomState(3)
  maps = rng.rand(10, 7, 8, 8).astype(np.float32) ** 4
  maps[2, 3] = 0  # a dead channel in one image
  cats = rng.randint(0, 4, (10, 8, 8))
  cats[:5][cats[:5] == 3] = 2  # category 3 absent from half the images
  wins, present = reference_stats(maps, cats, 5, 2.0)
  full = ds.accumulate(maps, cats, 5, 2.0)
  np.testing.assert_array_equal(full.wins, wins)
  np.testing.assert_array_equal(full.present, present)
  parts = [ds.accumulate(maps[a:b], cats[a:b], 5, 2.0, chunk_size=2) for a, b in ((0, 3), (3, 4), (4, 10))]
  stream = parts[0] + parts[1] + parts[2]
  np.testing.assert_array_equal(stream.wins, full.wins)
  np.testing.assert_array_equal(stream.present, full.present)
  np.testing.assert_allclose(stream.score_sum, full.score_sum, rtol=1e-12)
  np.testing.assert_allclose(stream.coverage_sum, full.coverage_sum, rtol=1e-12)
  assert stream.num_images == 10
  frac = stream.fractions()
  assert frac[:, 4].sum() == 0 and np.allclose(frac[:, 3], stream.wins[:, 3] / 5)


def test_decision_rule():
  frac = np.array(
    [
      [0.9, 0.5, 0.0],  # margin 0.4: active for 0
      [0.6, 0.4, 0.1],  # margin only 0.2
      [0.5, 0.0, 0.0],  # not > 0.5
      [0.95, 0.1, 0.0],  # best for 0
      [0.3, 0.3, 0.7],
    ]
  )  # active for 2
  pos, top, second = la.select(frac, 0)
  np.testing.assert_array_equal(pos, [3, 0])
  np.testing.assert_allclose(second[:2], [0.5, 0.4])
  np.testing.assert_array_equal(la.select(frac, 0, margin=0.15)[0], [3, 0, 1])
  np.testing.assert_array_equal(la.select(frac, 0, threshold=0.92)[0], [3])
  np.testing.assert_array_equal(la.select(frac, (0, 1))[0], [0, 3, 1])  # merged region: sums, vs category 2
  dets = la.detect_all(frac)
  assert dets[2].tolist() == [4] and dets[1].tolist() == []
  layout = style_layout(CFG)
  channels = np.array([0, 1, 2, 5, 9])  # flat S: layer 0 (4), toRGB 1 (4), conv 2 ...
  hist = la.layer_histogram(layout, channels, dets, 3)
  assert hist.shape == (len(layout), 3) and hist[0, 0] == 1 and hist[2, 2] == 1 and hist[1, 0] == 1


def test_parse_layers_and_check_generator():
  layout = style_layout(CFG)
  assert la.parse_layers(layout, "0,2-3") == [0, 2, 3]
  with pytest.raises(ValueError, match="style layer 9 out of range"):
    la.parse_layers(layout, "2,9")
  g = tiny_generator()
  storage.check_generator(g, 0.7)
  with pytest.raises(ValueError, match="no constant noise buffers"):
    storage.check_generator(Generator(g.params, {"w_avg": g.buffers["w_avg"]}, CFG))
  with pytest.raises(ValueError, match="no w_avg"):
    storage.check_generator(Generator(g.params, {"noise": g.buffers["noise"]}, CFG), psi=0.7)


def test_float16_storage_keeps_ranks():
  rng = np.random.RandomState(0)
  maps = (rng.rand(2, 3, 4, 4) * 10.0 ** rng.uniform(-6, 0, (2, 3, 1, 1))).astype(np.float32)
  enc = storage.encode_maps(maps, "float16")
  dec = enc["maps"].astype(np.float32) * enc["scale"][:, :, None, None]
  np.testing.assert_allclose(dec, maps, rtol=1e-3)
  rank = lambda x: np.argsort(-x.reshape(6, -1), kind="stable")
  np.testing.assert_array_equal(rank(dec), rank(maps))


def _standin_maps(g, styles, resolution, include_torgb, chunk_size, method):
  """Deterministic fake maps: a bump whose position follows the first style value."""
  s = np.asarray(styles[0])
  yy, xx = np.mgrid[:8, :8]
  cy = (np.abs(s[:, :1, None, None]) * 7 * np.arange(1, 13)[None, :, None, None]) % 8
  return np.exp(-((yy - cy) ** 2 + (xx - 3.5) ** 2) / 4.0).astype(np.float32)


def _quadrants(seeds, index, images):
  lab = np.zeros(images.shape[:3], np.int32)
  h, w = lab.shape[1:]
  lab[:, : h // 2, w // 2 :] = 1
  lab[:, h // 2 :, : w // 2] = 17
  lab[:, h // 2 :, w // 2 :] = 10
  return lab


def _run(workdir, g, fail_at=None):
  calls = []

  def maps_fn(*a, **kw):
    calls.append(1)
    if fail_at is not None and len(calls) == fail_at:
      raise KeyboardInterrupt  # a kill in the middle of the job
    return _standin_maps(*a, **kw)

  gm = storage.gradient_map_job(workdir, g, range(7), "tiny", 8, images_per_shard=3)
  run_gradient_maps(gm, g, maps_fn=maps_fn)
  job = la.detection_job(workdir, gm, {"segmenter": "quadrants"}, segmentation.FFHQ)
  la.run_detection(job, gm, _quadrants, segmentation.FFHQ)
  return la.finalize(job, gm, threshold=0.3, margin=0.1), gm, job


def test_jobs_resume_after_a_kill(tmp_path):
  g = tiny_generator()
  (ref, ref_hist), gm, job = _run(tmp_path / "a", g)
  with pytest.raises(KeyboardInterrupt):
    _run(tmp_path / "b", g, fail_at=2)
  assert gm.num_shards == 3 and (tmp_path / "b/gradmaps/shard_00000.npz").exists()
  assert not (tmp_path / "b/gradmaps/shard_00001.npz").exists()
  (got, got_hist), gm_b, _ = _run(tmp_path / "b", g)
  for i in range(3):
    a, b = gm.read(i), gm_b.read(i)
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
  assert got == ref and np.array_equal(got_hist, ref_hist)
  d = gm.read(0)
  assert d["images"].dtype == np.uint8 and d["styles"].shape == (3, 20) and d["maps"].shape == (3, 12, 8, 8)
  present = {c["category"]: c["present_images"] for c in ref["categories"]}
  assert present["background"] == present["hair"] == present["nose"] == present["skin"] == 7
  assert present["eye"] == 0
  only, _ = la.finalize(job, gm, threshold=0.3, margin=0.1, layers=[2])
  names = [e["name"] for c in only["categories"] for e in c["detected"] + c["top"]]
  assert names and all(n.startswith("2_") for n in names)
  with pytest.raises(ValueError, match="different settings"):
    storage.gradient_map_job(tmp_path / "a", g, range(8), "tiny", 8, images_per_shard=3)


def _outputs(d):
  """detections.json, layer_histogram.json and the arrays of local.npz / mean_maps.npz of a job folder."""
  import json

  from ss_jax.runtime import jobs

  out = {f: json.loads((d / f).read_text()) for f in ("detections.json", "layer_histogram.json")}
  for f in ("local.npz", "mean_maps.npz"):
    out.update({f"{f}:{k}": v.tolist() for k, v in jobs.load_npz(d / f).items()})
  return out


def test_score_shards_without_mass_sums_still_load(tmp_path):
  """Score shards as written before the gradient-mass sums existed (official sums and cats only) give
  the same detections, the same official sums and the mass sums of fresh shards; resuming such a job
  writes new-format shards beside them."""
  from ss_jax.stylespace import verified_detection as vd

  g = tiny_generator()
  (ref, _), gm, job = _run(tmp_path, g)
  want = ds.load(job, gm).to_arrays()
  assert set(ds.MASS_KEYS) <= set(job.read(0).keys())
  ref_files = _outputs(job.dir)
  ref_mass, _ = vd.finalize(job, gm, "mass", mass_threshold=0.05)
  for i in range(job.num_shards):  # the old format: LocalStats.to_arrays() + cats
    d = job.read(i)
    job.write(i, **{k: d[k] for k in ds.OFFICIAL_KEYS + ("cats",)})
  assert not set(ds.MASS_KEYS) & set(job.read(1).keys())
  for attempt in range(2):  # re-summed from the stored maps, then read from the cache
    got = ds.load(job, gm).to_arrays()
    assert got.keys() == want.keys() and all(np.array_equal(got[k], want[k]) for k in want), attempt
    assert (job.dir / ds.STATS_FILE).is_file()
  assert la.finalize(job, gm, threshold=0.3, margin=0.1)[0] == ref and _outputs(job.dir) == ref_files
  assert vd.finalize(job, gm, "mass", mass_threshold=0.05)[0] == ref_mass
  job.shard_path(2).unlink()  # resume: the missing shard is scored in the new format, the others kept
  (job.dir / ds.STATS_FILE).unlink()
  la.run_detection(job, gm, _quadrants, segmentation.FFHQ)
  assert set(ds.MASS_KEYS) <= set(job.read(2).keys()) and not set(ds.MASS_KEYS) & set(job.read(0).keys())
  got = ds.load(job, gm).to_arrays()
  assert all(np.array_equal(got[k], want[k]) for k in want)
