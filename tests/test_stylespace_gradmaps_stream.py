"""Streamed detection statistics: same detections as stored maps, resumable, bounded disk."""

import functools
import json

import jax
import numpy as np
import pytest

from ss_jax.stylespace import detection_stats, segmentation
from ss_jax.runtime import distributed, jobs
from ss_jax.stylespace.gradmaps import stream as gradmap_stream, api as gradmaps
from ss_jax.stylespace import locally_active as la
from ss_jax.stylespace.gradmaps import storage
from ss_jax.stylespace import verification as V
from ss_jax.stylespace import verified_detection as vd

import tiny


@functools.lru_cache(maxsize=1)
def _toyfaces():
  return segmentation.labels_source(segmenter="toyfaces")


def _toyfaces_labels(seeds, index, images):
  """The shipped ToyFaces segmenter on the tiny 16 px images, up-sampled to its 64 px and back."""
  big = np.repeat(np.repeat(images, 4, axis=1), 4, axis=2)
  return _toyfaces()[0](seeds, index, big)[:, ::4, ::4]


def test_mass_sums_match_a_loop():
  rng = np.random.RandomState(0)
  maps = rng.exponential(size=(3, 5, 4, 4)).astype(np.float32)
  maps[1, 2] = 0.0  # an all-zero map: share 0
  cats = rng.randint(0, 3, size=(3, 4, 4))
  cats[2] = 0  # categories 1, 2 absent in image 2
  st = detection_stats.accumulate(maps, cats, 4, with_map_sum=True)
  share, inside, total, area = (np.zeros((5, 4)) for _ in range(4))
  for i in range(3):
    for k in np.unique(cats[i]):
      area[:, k] += np.mean(cats[i] == k)
      for c in range(5):
        m = maps[i, c].astype(np.float64)
        inside[c, k] += m[cats[i] == k].sum()
        total[c, k] += m.sum()
        share[c, k] += m[cats[i] == k].sum() / m.sum() if m.sum() > 0 else 0.0
  np.testing.assert_allclose(st.mass_share_sum, share, rtol=1e-12)
  np.testing.assert_allclose(st.mass_inside_sum, inside, rtol=1e-12)
  np.testing.assert_allclose(st.mass_total_sum, total, rtol=1e-12)
  np.testing.assert_allclose(st.area_share_sum, area[0], rtol=1e-12)
  np.testing.assert_array_equal(st.present, [3, 2, 2, 0])
  np.testing.assert_allclose(st.mean_maps(), maps.mean(0), rtol=1e-6)
  one = detection_stats.accumulate(maps, cats, 4, with_map_sum=True, chunk_size=1)  # chunked == whole
  for k, v in one.to_arrays().items():
    np.testing.assert_allclose(v, st.to_arrays()[k], rtol=1e-12)
  assert 0.0 <= st.mean_mass_share().min() and st.pooled_mass_share().max() <= 1.0 + 1e-12
  back = detection_stats.DetectionStats.from_arrays(st.to_arrays())
  assert all(np.array_equal(v, back.to_arrays()[k]) for k, v in st.to_arrays().items())


def _stored(workdir, g, seeds, labels_fn, table, method, mesh, res):
  gm = storage.gradient_map_job(workdir, g, seeds, "tiny", res, images_per_shard=2)
  gradmaps.run_job(gm, g, method=method, mesh=mesh)
  job = la.detection_job(workdir, gm, {"segmenter": "test"}, table)
  la.run_detection(job, gm, labels_fn, table)
  result = la.finalize(job, gm, threshold=0.3, margin=0.1)
  return result, job, gm


def _streamed(workdir, g, seeds, labels_fn, table, method, mesh, res):
  job = gradmap_stream.stream_job(
    workdir, g, seeds, "tiny", {"segmenter": "test"}, table, resolution=res, images_per_shard=2
  )
  gradmap_stream.run(job, g, labels_fn, method=method, mesh=mesh)
  distributed.wait_for_shards(job)
  job.fold()
  return gradmap_stream.finalize(job, workdir / "local", threshold=0.3, margin=0.1), job


def _same_outputs(a_dir, b_dir):
  for f in ("detections.json", "layer_histogram.json"):
    assert json.loads((a_dir / f).read_text()) == json.loads((b_dir / f).read_text()), f
  for f in ("local.npz", "mean_maps.npz"):
    a, b = jobs.load_npz(a_dir / f), jobs.load_npz(b_dir / f)
    assert a.keys() == b.keys()
    for k in a:
      np.testing.assert_array_equal(a[k], b[k], err_msg=f"{f}:{k}")


def test_stream_equals_stored_and_resumes(tmp_path):
  """Tiny generator, shipped ToyFaces segmenter: same files as the stored path; a kill loses nothing."""
  g = tiny.tiny_generator(0)
  mesh = jax.make_mesh((2,), ("data",), devices=jax.devices()[:2])
  seeds, table = range(7), _toyfaces()[2]
  (ref, ref_hist), ref_job, ref_gm = _stored(tmp_path / "a", g, seeds, _toyfaces_labels, table, "forward", mesh, 8)
  (got, got_hist), sj = _streamed(tmp_path / "b", g, seeds, _toyfaces_labels, table, "forward", mesh, 8)
  assert got == ref and np.array_equal(got_hist, ref_hist)
  assert ref["settings"]["table"] == "toyfaces" and sum(len(c["detected"]) for c in ref["categories"]) > 0
  assert sum(c["present_images"] > 0 for c in ref["categories"]) >= 3
  _same_outputs(ref_job.dir, tmp_path / "b" / "local")
  want = detection_stats.load(ref_job, ref_gm).to_arrays()
  have = jobs.load_npz(tmp_path / "b" / "local" / "stats.npz")
  for k, v in want.items():
    np.testing.assert_array_equal(have[k], v, err_msg=k)  # bit-identical sums
  # Disk: the spec, one total and shard 0's examples; no per-shard files left.
  assert sorted(p.name for p in sj.dir.iterdir()) == ["examples.npz", "spec.json", "total_00004.npz"]
  _scores_and_verification(tmp_path, g, ref_job, ref_gm)

  calls = []

  def dying(seeds, index, images):
    calls.append(1)
    if len(calls) == 3:
      raise KeyboardInterrupt  # killed in the middle of shard 2
    return _toyfaces_labels(seeds, index, images)

  with pytest.raises(KeyboardInterrupt):
    _streamed(tmp_path / "c", g, seeds, dying, table, "forward", mesh, 8)
  job = gradmap_stream.open_stream(tmp_path / "c")
  assert job.folded() == 2 and job.pending() == [2, 3]
  (again, _), _ = _streamed(tmp_path / "c", g, seeds, _toyfaces_labels, table, "forward", mesh, 8)
  assert again == ref
  for k, v in want.items():
    np.testing.assert_array_equal(jobs.load_npz(tmp_path / "c" / "local" / "stats.npz")[k], v, err_msg=k)
  with pytest.raises(jobs.SettingsMismatch):
    gradmap_stream.stream_job(
      tmp_path / "c", g, range(8), "tiny", {"segmenter": "test"}, table, resolution=8, images_per_shard=2
    )


def _scores_and_verification(tmp_path, g, ref_job, ref_gm):
  """detect_local's library path on the streamed workdir: every --score rule gives the stored path's
  detections (sums from detection_stats on both paths), and verification runs on the streamed view."""
  with pytest.raises(ValueError, match="streamed statistics"):
    vd.score_workdir(tmp_path / "b", segmenter="toyfaces")
  for score in ("official", "mass", "union"):
    want, _ = vd.finalize(ref_job, ref_gm, score, 0.3, 0.1, mass_threshold=0.05)
    sc = vd.score_workdir(tmp_path / "b", name=f"local_{score}")
    assert sc.streamed and sc.source == {"segmenter": "test"}
    got, _ = vd.finalize(sc.job, sc.gm, score, 0.3, 0.1, mass_threshold=0.05, stats=sc.stats, maps_fn=sc.maps_fn)
    assert got == want, score
    assert got["settings"]["score"] == score
    _same_outputs(ref_job.dir, sc.job.dir)
  assert sum(len(c["detected"]) for c in got["categories"]) > sum(
    len(c["detected"]) for c in la.finalize(ref_job, ref_gm, threshold=0.3, margin=0.1)[0]["categories"]
  )
  # Verification: the edits' std recomputed from the seeds equals the stored styles' std.
  np.testing.assert_allclose(
    V.sigma_from_seeds(g, sc.gm.spec), V.sigma_from_gradient_maps(ref_gm), rtol=1e-5, atol=1e-7
  )
  table = segmentation.CategoryTable.from_json(sc.job.spec["table"])
  vjob = vd.make_verify_job(tmp_path / "b", sc.gm, g, sc.source, table, [100, 101], alphas=(-5.0, 5.0))
  out = vd.verify(sc.job, sc.gm, got, g, _toyfaces_labels, vjob, min_share=0.3, min_changed=0.0, baseline_per_layer=1)
  assert [c["detected"] for c in out["categories"]] == [len(c["detected"]) for c in got["categories"]]
  assert json.loads((sc.job.dir / "verified.json").read_text()) == json.loads(json.dumps(out))


def test_fold_in_shard_order_with_two_processes(tmp_path):
  """Shards written by two processes in any order fold to the single-process total."""
  spec = {"kind": "test"}
  rng = np.random.RandomState(1)
  parts = [
    detection_stats.accumulate(
      rng.rand(2, 3, 4, 4).astype(np.float32), rng.randint(0, 2, (2, 4, 4)), 2, with_map_sum=True
    )
    for _ in range(5)
  ]
  p0 = gradmap_stream.StreamJob(tmp_path, spec, 5, process_index=0, process_count=2)
  p1 = gradmap_stream.StreamJob(tmp_path, spec, 5, process_index=1, process_count=2)
  assert p0.pending() == [0, 2, 4] and p1.pending() == [1, 3]
  for i in (3, 1):
    p1.write(i, parts[i])
  assert p0.fold() == 0 and p0.done(1) and not p0.done(0)
  p0.write(0, parts[0])
  assert p0.fold() == 2 and p0.done(1) and not p0.shard_path(1).exists()
  p0.write(2, parts[2])
  p0.write(4, parts[4])
  assert p0.fold() == 5 and p0.complete()
  want = parts[0]
  for p in parts[1:]:
    want = want + p
  got = gradmap_stream.StreamJob(tmp_path, spec, 5, 0, 1).stats()  # a fresh process re-reads the total
  for k, v in want.to_arrays().items():
    np.testing.assert_array_equal(got.to_arrays()[k], v, err_msg=k)
