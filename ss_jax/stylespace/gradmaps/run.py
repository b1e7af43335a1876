"""One gradient-map run end to end (the pipeline of experiments/gradient_maps.py).

`Settings` holds the binary's flags as plain data. `prepare` parses the seeds, loads and checks
the generator and opens the resumable job: the maps themselves (storage.gradient_map_job) or,
with `stream`, per-category detection sums (stream.stream_job, masks from
segmentation.labels_source). `compute` maps this process's missing shards; errors of both are
FileNotFoundError or ValueError (CheckpointError, SettingsMismatch included). `finish` waits
for the other processes' shards (jobs.ShardsMissing when they never show up); process 0 folds
the streamed sums.
"""

import dataclasses
from typing import Any, Callable, Optional

from ss_jax.runtime import defaults, distributed
from ss_jax.runtime.seeds import parse_seeds
from ss_jax.stylegan2.checkpoint import load_generator
from ss_jax.stylespace import segmentation
from ss_jax.stylespace.gradmaps import api, storage, stream


@dataclasses.dataclass(frozen=True)
class Settings:
  """The gradient_maps binary's flags (see experiments/gradient_maps.py)."""

  checkpoint: Optional[str]  # None: the embedded ToyFaces generator
  seeds: str  # e.g. '0-999'
  psi: float
  class_idx: int
  resolution: int
  include_torgb: bool
  workdir: str
  images_per_shard: int
  dtype: str
  chunk_size: Optional[int]
  method: str
  stream: bool
  labels_dir: Optional[str]
  segmenter: Optional[str]
  categories: Optional[str]
  discount: float


@dataclasses.dataclass
class Prepared:
  settings: Settings
  g: Any
  seeds: list
  job: Any  # jobs.ShardedJob (maps) or stream.StreamJob
  labels_fn: Optional[Callable] = None  # stream: images -> label maps


def prepare(s: Settings) -> Prepared:
  seeds = parse_seeds(s.seeds)
  ckpt = s.checkpoint or defaults.default_checkpoint()
  g = load_generator(ckpt)
  storage.check_generator(g, s.psi)
  args = (s.resolution, s.include_torgb, s.psi, s.class_idx, s.images_per_shard)
  if s.stream:
    labels_fn, source, table = segmentation.labels_source(s.labels_dir, s.segmenter, s.categories)
    return Prepared(
      s, g, seeds, stream.stream_job(s.workdir, g, seeds, ckpt, source, table, s.discount, *args), labels_fn
    )
  return Prepared(s, g, seeds, storage.gradient_map_job(s.workdir, g, seeds, ckpt, *args, s.dtype))


def compute(p: Prepared):
  """Maps this process's missing shards (every process calls it: lock-step rounds)."""
  s, gm, seeds = p.settings, p.job, p.seeds
  pooled = gm.spec.get("gradient_maps", gm.spec)["pooled"]
  distributed.log(
    f"gradient maps of {len(seeds)} images at {pooled}x{pooled} -> {gm.dir} "
    f"({len(gm.mine()) - len(gm.pending())}/{len(gm.mine())} own shards done); "
    f"{distributed.describe()}"
  )
  # process 0 reports its own shards; the others advance in lock-step
  size = lambda i: len(seeds[i * s.images_per_shard : (i + 1) * s.images_per_shard])
  progress = distributed.main_progress(
    sum(size(i) for i in gm.mine()),
    "gradient maps",
    "images",
    done=sum(size(i) for i in set(gm.mine()) - set(gm.pending())),
  )
  kw = dict(chunk_size=s.chunk_size, method=s.method, progress=progress)
  if s.stream:
    stream.run(gm, p.g, p.labels_fn, **kw)
  else:
    api.run_job(gm, p.g, **kw)


def finish(p: Prepared):
  """Waits for every process's shards; process 0 merges the streamed sums."""
  distributed.wait_for_shards(p.job)
  if distributed.is_main() and p.settings.stream:
    p.job.fold()  # process 0 merges the other processes' shard sums
  distributed.log(f"done: {p.job.num_shards} shards in {p.job.dir}")
