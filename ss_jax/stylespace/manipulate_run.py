"""One batch edit end to end (the pipeline of experiments/manipulate.py): edits, grid, record.

`Settings` holds the binary's flags as plain data (checked on creation: stats and channels are
required). `prepare` parses seeds and alphas, loads the generator and the population stds and
opens the resumable edit job (ss_jax.stylespace.manipulate.make_job; errors: FileNotFoundError,
ValueError with CheckpointError, before any work). `run` renders this process's missing
shards (jobs.ShardsMissing when another process's shards never show up) and, on process 0,
writes OUTDIR/grid.png and manipulation.json (`record`).
"""

import dataclasses
import pathlib
from typing import Any, Optional

from ss_jax.runtime import defaults, distributed, images, jobs
from ss_jax.runtime.seeds import parse_seeds
from ss_jax.stylegan2.checkpoint import load_generator
from ss_jax.stylespace import manipulate, stats


@dataclasses.dataclass(frozen=True)
class Settings:
  """The manipulate binary's flags (see experiments/manipulate.py), --edit aside."""

  checkpoint: Optional[str]  # None: the embedded ToyFaces generator
  stats: Optional[str]  # stats.npz (required)
  channels: Optional[str]  # 'L_C,...' (required)
  seeds: str
  psi: float
  class_idx: Optional[int]
  alphas: str
  joint: bool
  min_cell: int
  batch_size: int
  images_per_shard: int
  outdir: str

  def __post_init__(self):
    if not self.stats or not self.channels:
      raise ValueError("--stats and --channels are required (or --edit=FILE.json)")


@dataclasses.dataclass
class Prepared:
  settings: Settings
  g: Any
  seeds: list
  alphas: Any
  job: jobs.ShardedJob


def prepare(s: Settings) -> Prepared:
  seeds = parse_seeds(s.seeds)
  alphas = manipulate.parse_alphas(s.alphas)
  g = load_generator(s.checkpoint or defaults.default_checkpoint())
  manipulate.resolve_channels(g.layout, s.channels)
  st = stats.load(s.stats, g.layout)
  job = manipulate.make_job(
    s.outdir,
    g,
    seeds,
    s.channels,
    alphas,
    st["std"],
    psi=s.psi,
    class_idx=s.class_idx,
    joint=s.joint,
    images_per_shard=s.images_per_shard,
  )
  return Prepared(s, g, seeds, alphas, job)


def channel_names(job):
  """The edited channels' labels: one per group, or the joint group's channels."""
  groups = job.spec["groups"]
  return [label for _, label in groups] if not job.spec["joint"] else groups[0][1].split("+")


def record(p: Prepared) -> dict:
  """manipulation.json: channels, their sigma, alphas, seeds, rows of the grid and the edits' folder."""
  s, groups = p.settings, p.job.spec["groups"]
  idx = [i for grp, _ in groups for i in grp]
  return {
    "channels": channel_names(p.job),
    "sigma": [p.job.spec["sigma"][str(i)] for i in idx],
    "alphas": list(p.alphas),
    "seeds": p.seeds,
    "psi": s.psi,
    "joint": s.joint,
    "stats": s.stats,
    "rows": [label for _, label in groups for _ in p.seeds],
    "edits": str(p.job.dir),
  }


def run(p: Prepared):
  """Renders the edits; process 0 writes grid.png and manipulation.json and gets the grid."""
  s, job, groups = p.settings, p.job, p.job.spec["groups"]
  distributed.log(
    f"editing {', '.join(channel_names(job))}{' jointly' if s.joint else ''} on {len(p.seeds)} images, "
    f"alphas {list(p.alphas)} -> {job.dir}; {distributed.describe()}"
  )
  # process 0 reports its own shards; the others advance in lock-step
  progress = distributed.main_progress(len(job.pending()) * len(groups), "edits", "channel x shard", interval=0)
  manipulate.run_job(job, p.g, s.batch_size, progress=progress)
  distributed.wait_for_shards(job)
  if not distributed.is_main():
    return None
  grid = manipulate.job_grid(job, min_cell=s.min_cell)
  out = pathlib.Path(s.outdir)
  images.save_png(out / "grid.png", grid)
  jobs.atomic_write_json(out / "manipulation.json", record(p))
  distributed.log(f"wrote {out / 'grid.png'} ({grid.shape[1]}x{grid.shape[0]}) and manipulation.json")
  return grid
