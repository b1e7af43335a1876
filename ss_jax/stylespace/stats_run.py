"""One population-statistics run end to end (the pipeline of experiments/style_stats.py).

`Settings` holds the binary's flags as plain data. `prepare` loads the generator and opens the
resumable job (ss_jax.stylespace.stats.make_job; errors: FileNotFoundError, ValueError with
CheckpointError and SettingsMismatch, before any work). `run` computes this process's missing
shards (jobs.ShardsMissing when another process's shards never show up) and, on process 0,
writes WORKDIR/stats.npz (stats.save) and stats_summary.json (`summary`: per-layer means).
"""

import dataclasses
import pathlib
from typing import Any, Optional

import numpy as np

from ss_jax.runtime import defaults, distributed, jobs
from ss_jax.stylegan2.checkpoint import load_generator
from ss_jax.stylespace import channels, stats


@dataclasses.dataclass(frozen=True)
class Settings:
  """The style_stats binary's flags (see experiments/style_stats.py)."""

  checkpoint: Optional[str]  # None: the embedded ToyFaces generator
  num_samples: int
  psi: float
  seed: int
  class_idx: Optional[int]
  batch_size: int
  samples_per_shard: int
  workdir: str


@dataclasses.dataclass
class Prepared:
  settings: Settings
  checkpoint: str
  g: Any
  job: jobs.ShardedJob


def prepare(s: Settings) -> Prepared:
  checkpoint = s.checkpoint or defaults.default_checkpoint()
  g = load_generator(checkpoint)
  job = stats.make_job(
    s.workdir,
    g,
    s.num_samples,
    s.psi,
    s.seed,
    s.samples_per_shard,
    s.class_idx,
    extra_spec={"checkpoint": str(pathlib.Path(checkpoint).absolute())},
  )
  return Prepared(s, checkpoint, g, job)


def summary(result, layout, checkpoint, psi, seed) -> dict:
  """stats_summary.json: the settings, count, channels and each layer's mean of mean and of std."""
  layers = [
    {
      "index": L.index,
      "name": L.name,
      "kind": L.kind,
      "channels": L.channels,
      "mean_of_mean": float(np.mean(result["mean"][L.offset : L.offset + L.channels])),
      "mean_of_std": float(np.mean(result["std"][L.offset : L.offset + L.channels])),
    }
    for L in layout
  ]
  return {
    "checkpoint": str(checkpoint),
    "count": result["count"],
    "psi": psi,
    "seed": seed,
    "num_channels": channels.num_channels(layout),
    "ddof": 0,
    "layers": layers,
  }


def run(p: Prepared):
  """Computes the statistics; process 0 writes stats.npz and stats_summary.json and gets the result."""
  s, g, job, log = p.settings, p.g, p.job, distributed.log
  done = stats.done_samples(job, s.num_samples, s.samples_per_shard)
  log(
    f"population stats: {s.num_samples} samples, psi={s.psi}, {g.num_style_channels} channels, "
    f"{job.num_shards} shards ({done} samples already done) in {job.dir}; {distributed.describe()}"
  )
  progress = distributed.main_progress(s.num_samples, "styles", "samples", done=done)
  result = stats.population_stats(
    g, s.num_samples, s.psi, s.batch_size, s.seed, job, progress, s.samples_per_shard, s.class_idx
  )
  if not distributed.is_main():
    return None
  out = pathlib.Path(s.workdir)
  stats.save(out / "stats.npz", result, g.layout, psi=s.psi, seed=s.seed, model=job.spec["model"])
  jobs.atomic_write_json(out / "stats_summary.json", summary(result, g.layout, p.checkpoint, s.psi, s.seed))
  log(f"wrote {out / 'stats.npz'} and stats_summary.json ({result['count']} samples)")
  return result
