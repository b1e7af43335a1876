"""Population statistics of S: per-channel mean and std over generated samples.

Conventions (documented because they change the numbers):
  * Sample i of a population has seed `seed + i` and z = sampling.z_from_seeds
    (RandomState(seed + i).randn(z_dim)), so any member can be re-rendered with
    `experiments.generate --seeds=...`, independently of batch size, shard size
    and device count.
  * Truncation psi is applied to every w row (the official TF GetCode
    convention; the torch port leaves rows >= 8 untruncated).
  * Conditional models: class label (seed + i) % c_dim for sample i (balanced),
    or one fixed class_idx.
  * std is the population std (ddof=0), as numpy's default in the official code.
  * All channels, toRGB included (flat S, generator order).

The population is cut into chunks of `samples_per_shard` samples; each chunk's
(count, mean, M2) in float64 is one ShardedJob shard, so a killed run resumes at
the missing chunks, with any number of devices or processes (the chunking never
depends on them). Batches are computed with the batch sharded over a 1-D device
mesh (every device of every process: ss_jax.runtime.distributed) and merged on the host
with Chan et al.'s parallel formula, which stays accurate where a naive sum of
squares would cancel; shards are merged in shard order.
"""

import pathlib

import numpy as np

from ss_jax.runtime import distributed, jobs

from ss_jax.runtime.fingerprints import model_fingerprint
from ss_jax.stylegan2.sampling import iter_styles_from_seeds
from ss_jax.stylespace import channels as stylespace

JOB_NAME = "population_stats"
DEFAULT_SAMPLES_PER_SHARD = 10_000


# ---------------------------------------------------------------- moments


def batch_moments(x):
  """(B, C) samples -> (count, mean (C,), M2 (C,)), float64; M2 = sum of squared deviations."""
  x = np.asarray(x, np.float64)
  mean = x.mean(axis=0)
  return len(x), mean, np.square(x - mean).sum(axis=0)


def merge_moments(a, b):
  """Chan et al.'s combination of two (count, mean, M2) triples."""
  na, ma, m2a = a
  nb, mb, m2b = b
  if na == 0:
    return b
  if nb == 0:
    return a
  n = na + nb
  delta = mb - ma
  return n, ma + delta * (nb / n), m2a + m2b + np.square(delta) * (na * nb / n)


def empty_moments(num_channels):
  return 0, np.zeros(num_channels), np.zeros(num_channels)


# ---------------------------------------------------------------- population statistics


def _settings(num_samples, psi, seed, samples_per_shard, class_idx):
  return {
    "num_samples": int(num_samples),
    "psi": float(psi),
    "seed": int(seed),
    "samples_per_shard": int(samples_per_shard),
    "class_idx": class_idx,
    "z": "z_from_seeds(seed + i)",
    "ddof": 0,
  }


def make_job(
  workdir, g, num_samples, psi=0.7, seed=0, samples_per_shard=DEFAULT_SAMPLES_PER_SHARD, class_idx=None, extra_spec=None
):
  """The ShardedJob (workdir/population_stats/) matching population_stats' chunking.

  Raises jobs.SettingsMismatch if workdir holds a run with other settings or another model.
  """
  spec = dict(
    _settings(num_samples, psi, seed, samples_per_shard, class_idx), model=model_fingerprint(g), **(extra_spec or {})
  )
  return jobs.ShardedJob(workdir, JOB_NAME, spec, len(jobs.shard_ranges(num_samples, samples_per_shard)))


def done_samples(job, num_samples, samples_per_shard=DEFAULT_SAMPLES_PER_SHARD):
  """Samples already covered by finished shards (for a Progress start value)."""
  return sum(b - a for i, (a, b) in enumerate(jobs.shard_ranges(num_samples, samples_per_shard)) if job.done(i))


def population_stats(
  g,
  num_samples,
  psi=0.7,
  batch_size=256,
  seed=0,
  job=None,
  progress=None,
  samples_per_shard=DEFAULT_SAMPLES_PER_SHARD,
  class_idx=None,
  mesh=None,
  wait_s=None,
):
  """Per-channel mean and std of flat S over samples seed .. seed + num_samples - 1.

  Args:
    g: Generator.
    batch_size: samples per step per process (padded to its devices on the mesh).
    job: optional ShardedJob from make_job (same settings); finished shards are
      reused and only this process's missing ones computed (in lock-step with the
      other processes, see ss_jax.runtime.distributed), then all shards are merged once
      every process has written its own. Without a job every process computes
      everything in memory; the result is the same.
    progress: optional object with update(n), called with samples done per batch.
    mesh: 1-D mesh with axis 'data' (default: every device of every process).
    wait_s: how long to wait for other processes' shard files after the barrier
      (default: distributed.wait_for_shards').

  Returns:
    dict(mean (C,) float64, std (C,) float64 (ddof=0), count int), on every process.
  """
  ranges = jobs.shard_ranges(num_samples, samples_per_shard)
  if job is not None:
    want = _settings(num_samples, psi, seed, samples_per_shard, class_idx)
    bad = sorted(k for k in want if k in job.spec and job.spec[k] != want[k])
    if bad or job.num_shards != len(ranges):
      raise ValueError(f"{job.dir}: job settings differ from the arguments ({', '.join(bad) or 'num_shards'})")
  mesh = distributed.auto_axes(mesh or distributed.default_mesh())
  g = distributed.replicate(g, mesh)
  num_channels = stylespace.num_channels(g.layout)
  parts = {}
  todo = distributed.schedule(job.pending(), mesh) if job is not None else range(len(ranges))
  for i in todo:
    a, b = ranges[i] if i is not None else (0, 0)  # None: no shard left here, feed no rows
    acc = empty_moments(num_channels)
    for x in iter_styles_from_seeds(g, range(seed + a, seed + b), psi, batch_size, class_idx, mesh):
      if len(x):  # a step may hold none of this process's rows
        acc = merge_moments(acc, batch_moments(x))
        if progress is not None:
          progress.update(len(x))
    if i is None:
      continue
    if job is not None:
      job.write(i, count=np.int64(acc[0]), mean=acc[1], m2=acc[2])
    else:
      parts[i] = acc
  if job is not None:
    distributed.wait_for_shards(job, timeout_s=wait_s)
  total = empty_moments(num_channels)
  for i in range(len(ranges)):  # merge in shard order: identical result however the shards were made
    if i in parts:
      part = parts[i]
    else:
      d = job.read(i)
      part = (int(d["count"]), d["mean"], d["m2"])
    total = merge_moments(total, part)
  n, mean, m2 = total
  return {"mean": mean, "std": np.sqrt(m2 / n), "count": int(n)}


# ---------------------------------------------------------------- stats.npz


def save(path, result, layout, **meta):
  """Write stats.npz atomically: mean, std, count, layer_offsets, layer_channels (+ scalar meta)."""
  check(result["mean"], result["std"], layout)
  jobs.atomic_save_npz(
    path,
    mean=np.asarray(result["mean"], np.float64),
    std=np.asarray(result["std"], np.float64),
    count=np.int64(result["count"]),
    layer_offsets=np.array([L.offset for L in layout], np.int64),
    layer_channels=np.array([L.channels for L in layout], np.int64),
    **{k: np.asarray(v) for k, v in meta.items()},
  )


def check(mean, std, layout, source="stats"):
  """Clear ValueError unless mean/std are (C,) vectors for this layout."""
  c = stylespace.num_channels(layout)
  for name, v in (("mean", mean), ("std", std)):
    v = np.asarray(v)
    if v.shape != (c,):
      raise ValueError(
        f"{source}: {name} has shape {v.shape} but this model has {c} style channels "
        "(computed for a different generator?)"
      )


def load(path, layout=None):
  """Read stats.npz -> dict(mean, std, count, ...); checked against layout when given."""
  path = pathlib.Path(path)
  if not path.is_file():
    raise FileNotFoundError(f"stats file not found: {path} (run experiments.style_stats first)")
  try:
    d = jobs.load_npz(path)
  except Exception as e:  # a truncated or foreign file
    raise ValueError(f"{path}: not a readable stats .npz ({e})") from e
  if "mean" not in d or "std" not in d:
    raise ValueError(f"{path}: no 'mean'/'std' arrays; not a stats file")
  if layout is not None:
    check(d["mean"], d["std"], layout, source=str(path))
    offsets = d.get("layer_offsets")
    if offsets is not None and not np.array_equal(offsets, [L.offset for L in layout]):
      raise ValueError(f"{path}: layer offsets differ from this model's style layout")
  d["count"] = int(d.get("count", 0))
  return d
