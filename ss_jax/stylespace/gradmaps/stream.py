"""Streaming detection: gradient maps reduced to per-category sums as they are computed.

  job = stream.stream_job(workdir, g, seeds, checkpoint, labels_source, table)
  stream.run(job, g, labels_fn)                          # every process, resumable
  distributed.wait_for_shards(job); job.fold()           # process 0: merge
  stream.finalize(job, outdir)                           # official rule only (locally_active.finalize)
  verified_detection.score_workdir(workdir)              # what detect_local uses: any --score, verification

Instead of storing every image's maps (C * P * P * 4 bytes per image: 24.8 MB at
1024 px), each shard of images is rendered, mapped (`gradmaps.map_shards`, the
stored path's computation), segmented, and reduced at once by
`detection_stats.accumulate` to the sums both detection scores need (official
win counts and gradient-mass sums, (C, K), plus the summed maps (C, P, P) for the
mean maps). Disk use does not grow with the number of images:

  WORKDIR/gradstats/spec.json             gradient-map settings + labels, table, discount
  WORKDIR/gradstats/total_XXXXX.npz       sums of shards 0..XXXXX-1 (DetectionStats arrays)
  WORKDIR/gradstats/shard_XXXXX.npz       one shard's sums, until process 0 folds it in
  WORKDIR/gradstats/examples.npz          shard 0's seeds, styles, uint8 images, cats (reports)

Process 0 folds shard files into the total strictly in shard order (the stored
path's order, `detection_stats.sum_shards`, so the sums are bit-identical to it and to any rerun)
and deletes them after the new total is written; other processes only write their
own shard files (round-robin, lock-step rounds as `gradmaps.run_job`). A shard
counts as done when its file exists or the total covers it, so a killed run
restarted with the same command (any process or device count) computes only what
is missing. At 1024 px (6,048 conv channels, 11 categories, P = 32) the total is
~55 MB (50 MB of it the summed maps) whatever the number of images.
"""

import pathlib
import re
import types

from ss_jax.stylespace import detection_stats, locally_active, segmentation
from ss_jax.stylespace.gradmaps import storage
from ss_jax.runtime import jobs

STREAM = "gradstats"
_TOTAL = re.compile(r"total_(\d{5})\.npz$")


class StreamJob:
  """A streamed statistics job under workdir/gradstats/ (see the module docstring).

  Compatible with `distributed.wait_for_shards` (dir, num_shards, done, shard_path).
  """

  def __init__(self, workdir, spec, num_shards, process_index=None, process_count=None):
    self._job = jobs.ShardedJob(workdir, STREAM, spec, num_shards, process_index, process_count)
    self.dir, self.spec, self.num_shards = self._job.dir, self._job.spec, self._job.num_shards
    self.process_index = self._job.process_index
    self._total = None  # (folded, DetectionStats) once loaded by fold()

  def shard_path(self, i):
    return self._job.shard_path(i)

  def _totals(self):
    found = sorted((int(m.group(1)), p) for p in self.dir.glob("total_*.npz") if (m := _TOTAL.match(p.name)))
    return found

  def folded(self):
    """Number of leading shards summed into the newest total file."""
    t = self._totals()
    return t[-1][0] if t else 0

  def _done_set(self):
    files = {i for i in range(self.num_shards) if self.shard_path(i).exists()}  # before the total: see fold
    return files | set(range(self.folded()))

  def done(self, i):
    return i in self._done_set()

  def mine(self):
    return self._job.mine()

  def pending(self):
    done = self._done_set()
    return [i for i in self.mine() if i not in done]

  def complete(self):
    return self.folded() == self.num_shards

  def write(self, i, stats):
    self._job.write(i, **stats.to_arrays())

  def fold(self):
    """Process 0: adds the shard files that continue the total, in order; returns shards folded.

    The new total is written before the folded shard files are deleted, so a kill at
    any point loses nothing (a leftover shard file below the total is ignored, then removed).
    """
    if self._total is None:
      t = self._totals()
      self._total = (t[-1][0], detection_stats.DetectionStats.from_arrays(jobs.load_npz(t[-1][1]))) if t else (0, None)
    start, total = self._total
    k = start
    while k < self.num_shards and self.shard_path(k).exists():
      k += 1
    total = detection_stats.sum_shards(self._job.read, range(start, k), total)  # as the stored path
    if k > start:
      jobs.atomic_save_npz(self.dir / f"total_{k:05d}.npz", **total.to_arrays())
      self._total = (k, total)
    for j, p in self._totals():
      if j < k:
        p.unlink(missing_ok=True)
    for i in range(k):
      self.shard_path(i).unlink(missing_ok=True)
    return k

  def stats(self):
    """The complete total (DetectionStats); ValueError if shards are missing."""
    if self.fold() != self.num_shards:
      raise ValueError(
        f"streamed statistics in {self.dir} are incomplete ({self.folded()} of "
        f"{self.num_shards} shards); rerun experiments.gradient_maps --stream"
      )
    return self._total[1]


def stream_job(
  workdir,
  g,
  seeds,
  checkpoint,
  labels_source,
  table,
  discount=2.0,
  resolution=32,
  include_torgb=False,
  psi=0.7,
  class_idx=0,
  images_per_shard=8,
):
  """Creates or re-opens (same settings only) a streamed statistics job.

  Arguments as `storage.gradient_map_job` and `detection_job`; labels_source is
  the plain-data description of the masks ({"segmenter": name} or {"labels_dir": path}).
  """
  gm_spec, num = storage.gradient_map_spec(
    g, seeds, checkpoint, resolution, include_torgb, psi, class_idx, images_per_shard, "float32"
  )
  spec = {
    "kind": "gradient_stats",
    "gradient_maps": dict(gm_spec, num_shards=num),
    "labels": labels_source,
    "table": table.to_dict(),
    "discount": float(discount),
  }
  return StreamJob(workdir, spec, num)


def open_stream(workdir):
  """Re-opens the streamed statistics job of workdir, or None if there is none."""
  path = pathlib.Path(workdir) / STREAM / "spec.json"
  if not path.is_file():
    return None
  import json

  spec = json.loads(path.read_text())
  return StreamJob(workdir, {k: v for k, v in spec.items() if k != "num_shards"}, spec["num_shards"])


def run(job, g, labels_fn, chunk_size=None, method="auto", mesh=None, progress=None):
  """Computes this process's missing shards of a StreamJob (every process calls it).

  labels_fn: as for `locally_active.run_detection` (seeds, index, uint8 images) -> labels.
  Process 0 folds finished shards into the total as it goes. Returns images done here.
  """
  from ss_jax.stylespace.gradmaps import api as gradmaps
  from ss_jax.runtime import images as images_lib

  gm_spec = job.spec["gradient_maps"]
  storage.check_generator(g, gm_spec["psi"])
  table = segmentation.CategoryTable.from_json(job.spec["table"])
  k, pooled, done = table.num_categories, int(gm_spec["pooled"]), 0
  for i, idx, seeds, flat, x, maps in gradmaps.map_shards(gm_spec, job.pending(), g, chunk_size, method, mesh):
    if i is None:
      continue
    images = images_lib.to_uint8(x)
    cats = segmentation.check_labels(labels_fn(seeds, idx, images), table, images.shape[1:3])
    cats = segmentation.reduce_labels(cats, pooled, k)
    if i == 0:
      jobs.atomic_save_npz(job.dir / "examples.npz", seeds=seeds, index=idx, styles=flat, images=images, cats=cats)
    job.write(i, detection_stats.accumulate(maps, cats, k, job.spec["discount"], with_map_sum=True))
    if job.process_index == 0:
      job.fold()
    done += len(idx)
    if progress is not None:
      progress.update(len(idx))
  return done


def finalize(job, outdir, threshold=0.5, margin=0.25, top_k=20, layers=None):
  """`locally_active.finalize` on the streamed total: writes detections.json, local.npz,
  layer_histogram.json, mean_maps.npz into outdir, plus stats.npz (all DetectionStats sums)."""
  st = job.stats()
  outdir = pathlib.Path(outdir)
  outdir.mkdir(parents=True, exist_ok=True)
  view = types.SimpleNamespace(dir=outdir, spec=job.spec)
  gm = types.SimpleNamespace(spec=job.spec["gradient_maps"])
  result = locally_active.finalize(view, gm, threshold, margin, top_k, layers, stats=st, maps_fn=st.mean_maps)
  jobs.atomic_save_npz(outdir / "stats.npz", **st.to_arrays())
  return result
