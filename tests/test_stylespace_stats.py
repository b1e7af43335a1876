"""Population statistics of S: Chan merge, sharded/resumable computation, stats.npz, binary."""

import dataclasses
import os
import shutil
import subprocess
import sys

import jax
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from ss_jax.runtime import fingerprints
from ss_jax.runtime import distributed, jobs
from ss_jax import save_generator
from ss_jax.stylespace import stats
from ss_jax.stylegan2 import sampling

import tiny

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tiny_generator(seed=0, **kw):
  return tiny.tiny_generator(seed, dataclasses.replace(tiny.TINY, **kw))


@pytest.fixture(scope="module")
def g():
  return tiny_generator()


class Interrupt(Exception):
  pass


class Counter:
  """Progress stand-in: counts samples, optionally 'kills' the run past a limit."""

  def __init__(self, limit=None):
    self.done, self.limit = 0, limit

  def update(self, n=1):
    self.done += n
    if self.limit is not None and self.done > self.limit:
      raise Interrupt()


def test_chan_merge_is_exact_and_stable():
  rng = np.random.RandomState(0)
  x = 1e4 + rng.randn(101, 5)  # a large offset: a naive sum of squares would lose digits
  acc = stats.empty_moments(5)
  for a, b in ((0, 7), (7, 50), (50, 51), (51, 101)):
    acc = stats.merge_moments(acc, stats.batch_moments(x[a:b]))
  n, mean, m2 = acc
  assert n == 101
  np.testing.assert_allclose(mean, x.mean(0), rtol=1e-14)
  np.testing.assert_allclose(np.sqrt(m2 / n), x.std(0), rtol=1e-9)


def test_population_stats_equal_numpy_on_concatenated_samples(g):
  r = stats.population_stats(g, 45, psi=0.7, batch_size=8, seed=3, samples_per_shard=16)
  x = sampling.styles_from_seeds(g, range(3, 48), psi=0.7, batch_size=8).astype(np.float64)
  assert r["count"] == 45 and r["mean"].shape == (g.num_style_channels,)
  np.testing.assert_allclose(r["mean"], x.mean(0), rtol=1e-6, atol=1e-12)
  np.testing.assert_allclose(r["std"], x.std(0), rtol=1e-6)  # ddof=0


def test_resume_computes_only_missing_shards(g, tmp_path):
  kw = dict(psi=0.7, batch_size=10, seed=0, samples_per_shard=10)
  full = stats.population_stats(g, 40, **kw)
  job = stats.make_job(tmp_path, g, 40, 0.7, 0, 10)
  with pytest.raises(Interrupt):  # killed during shard 2: shards 0 and 1 are on disk
    stats.population_stats(g, 40, job=job, progress=Counter(limit=20), **kw)
  assert [job.done(i) for i in range(4)] == [True, True, False, False]
  assert stats.done_samples(job, 40, 10) == 20
  counter = Counter()
  job = stats.make_job(tmp_path, g, 40, 0.7, 0, 10)
  resumed = stats.population_stats(g, 40, job=job, progress=counter, **kw)
  assert counter.done == 20  # only the missing shards were computed
  for k in ("mean", "std", "count"):
    np.testing.assert_array_equal(resumed[k], full[k])


def test_resume_with_other_settings_is_refused(g, tmp_path):
  stats.make_job(tmp_path, g, 40, 0.7, 0, 10)
  with pytest.raises(jobs.SettingsMismatch, match="psi"):
    stats.make_job(tmp_path, g, 40, 0.5, 0, 10)
  with pytest.raises(jobs.SettingsMismatch, match="model"):
    stats.make_job(tmp_path, tiny_generator(seed=1), 40, 0.7, 0, 10)
  job = stats.make_job(tmp_path, g, 40, 0.7, 0, 10)
  with pytest.raises(ValueError, match="seed"):
    stats.population_stats(g, 40, seed=1, job=job, samples_per_shard=10)


def test_multi_device_equals_single_device(g):
  assert jax.device_count() == 4  # tests/conftest.py
  one = jax.make_mesh((1,), ("data",), devices=jax.devices()[:1])
  kw = dict(psi=0.7, batch_size=6, samples_per_shard=13)  # 6 pads to 8 rows on 4 devices
  a = stats.population_stats(g, 27, mesh=one, **kw)
  b = stats.population_stats(g, 27, **kw)
  np.testing.assert_allclose(a["mean"], b["mean"], rtol=1e-6, atol=1e-7)
  np.testing.assert_allclose(a["std"], b["std"], rtol=1e-6, atol=1e-7)
  assert a["count"] == b["count"] == 27
  mesh = distributed.default_mesh()
  step = distributed.sharded_step(sampling._z_to_s, mesh, 2, 1)
  out = step(g, np.zeros((8, 16), np.float32), np.zeros((8, 0), np.float32), np.float32(0.7))
  assert out.sharding.spec == P("data") and len(out.sharding.device_set) == 4


def test_uncoordinated_processes_split_the_shards(g, tmp_path):
  # Two processes without a runtime between them (each on its own devices): each writes only
  # its round-robin shards; merging waits for the other's files (here: none, so it fails at once).
  kw = dict(psi=0.7, batch_size=4, samples_per_shard=8)
  ref = stats.population_stats(g, 28, **kw)
  one = jax.make_mesh((1,), ("data",), devices=jax.devices()[:1])
  spec = dict(stats._settings(28, 0.7, 0, 8, None), model=fingerprints.model_fingerprint(g))
  first = jobs.ShardedJob(tmp_path, stats.JOB_NAME, spec, 4, process_index=0, process_count=2)
  with pytest.raises(jobs.ShardsMissing, match="2 shard\\(s\\) not done"):
    stats.population_stats(g, 28, job=first, mesh=one, **kw)
  assert [first.done(i) for i in range(4)] == [True, False, True, False]
  second = jobs.ShardedJob(tmp_path, stats.JOB_NAME, spec, 4, process_index=1, process_count=2)
  got = stats.population_stats(g, 28, job=second, **kw)
  np.testing.assert_allclose(got["mean"], ref["mean"], rtol=1e-6, atol=1e-7)
  np.testing.assert_allclose(got["std"], ref["std"], rtol=1e-6, atol=1e-7)


def test_conditional_labels_follow_the_seed():
  g = tiny_generator(c_dim=3)
  a = sampling.styles_from_seeds(g, range(5, 12), batch_size=4)
  b = np.concatenate(
    [sampling.styles_from_seeds(g, [s], batch_size=4) for s in (5, 6, 7)]
    + [sampling.styles_from_seeds(g, range(8, 12), batch_size=4)]
  )
  np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)  # label = seed % 3, whatever the batching
  fixed = sampling.styles_from_seeds(g, range(5, 12), batch_size=4, class_idx=2)
  np.testing.assert_allclose(fixed[0], a[0], rtol=1e-6, atol=1e-6)  # seed 5 -> class 2
  assert not np.allclose(fixed[1], a[1])


def test_save_load_roundtrip_and_errors(g, tmp_path):
  r = stats.population_stats(g, 8, batch_size=8)
  stats.save(tmp_path / "stats.npz", r, g.layout, psi=0.7)
  d = stats.load(tmp_path / "stats.npz", g.layout)
  np.testing.assert_array_equal(d["std"], r["std"])
  assert d["count"] == 8 and list(d["layer_offsets"]) == [L.offset for L in g.layout]
  other = tiny_generator(channels=(16, 8, 8))
  with pytest.raises(ValueError, match="style channels"):
    stats.load(tmp_path / "stats.npz", other.layout)
  with pytest.raises(FileNotFoundError, match="style_stats"):
    stats.load(tmp_path / "missing.npz")
  with pytest.raises(ValueError, match="num_samples"):
    stats.population_stats(g, 0)


def run_binary(module, *args):
  return subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, capture_output=True, text=True, timeout=120)


def test_binary_end_to_end_and_resume(g, tmp_path):
  save_generator(g, tmp_path / "gen")
  args = [
    f"--checkpoint={tmp_path / 'gen'}",
    "--num_samples=24",
    "--samples_per_shard=8",
    "--batch_size=8",
    f"--workdir={tmp_path / 'w'}",
  ]
  p = run_binary("experiments.style_stats", *args)
  assert p.returncode == 0, p.stderr[-2000:]
  d = stats.load(tmp_path / "w" / "stats.npz", g.layout)
  ref = stats.population_stats(g, 24, batch_size=8, samples_per_shard=8)
  np.testing.assert_allclose(d["std"], ref["std"], rtol=1e-6)
  assert (tmp_path / "w" / "stats_summary.json").is_file()
  os.remove(tmp_path / "w" / "population_stats" / "shard_00001.npz")
  shutil.copy(tmp_path / "w" / "stats.npz", tmp_path / "first.npz")
  p = run_binary("experiments.style_stats", *args)
  assert p.returncode == 0 and "16 samples already done" in p.stdout, p.stdout + p.stderr[-2000:]
  np.testing.assert_array_equal(
    stats.load(tmp_path / "w" / "stats.npz")["mean"], stats.load(tmp_path / "first.npz")["mean"]
  )
  p = run_binary("experiments.style_stats", *args[:-1], "--psi=0.5", args[-1])  # other settings
  assert p.returncode != 0 and p.stderr.strip().splitlines()[-1].startswith("error:")
  assert "different settings (psi)" in p.stderr
