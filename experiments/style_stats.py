"""Population statistics of S (per-channel mean/std, ddof=0) over generated samples.

  python -m experiments.style_stats --num_samples=100000 --psi=0.7 --workdir=out/stats
  python -m experiments.style_stats --checkpoint=ffhq.pkl --workdir=out/ffhq_stats

Resumable: rerunning with the same flags computes only the missing shards, with any
number of devices or processes. Several processes (docs/scaling.md): add
--coordinator_address=HOST:PORT --num_processes=M --process_id=i (or --distributed on a
TPU pod slice / SLURM); each computes its own shards and process 0 merges.
Writes WORKDIR/stats.npz (mean, std, count, layer offsets) and stats_summary.json.
"""

import pathlib
import sys

from absl import flags

from experiments import _distributed_flags
from ss_jax.runtime import cli

flags.DEFINE_string(
  "checkpoint", None, "Converted dir, NVIDIA .pkl or rosinality .pt; default: the embedded ToyFaces generator."
)
flags.DEFINE_integer("num_samples", 100_000, "Population size.")
flags.DEFINE_float("psi", 0.7, "Truncation psi, applied to every w row.")
flags.DEFINE_integer("seed", 0, "Sample i uses seed + i (z = RandomState(seed + i).randn).")
flags.DEFINE_integer("class_idx", None, "Class for conditional models (default: seed % c_dim).")
flags.DEFINE_integer("batch_size", 256, "Samples per step and process (padded to its device count).")
flags.DEFINE_integer("samples_per_shard", 10_000, "Samples per resumable shard.")
flags.DEFINE_string("workdir", None, "Output/resume directory.")
flags.mark_flag_as_required("workdir")
cli.positive("num_samples", "batch_size", "samples_per_shard")
cli.seed("seed")
cli.seed_span("seed", "num_samples")
cli.finite("psi")
cli.non_negative("class_idx")
FLAGS = flags.FLAGS


def main(argv):
  del argv
  import numpy as np
  from ss_jax.runtime import defaults, distributed, jobs
  from ss_jax.stylespace import stats
  from ss_jax.stylegan2.checkpoint import load_generator

  try:
    _distributed_flags.initialize()
    checkpoint = FLAGS.checkpoint or defaults.default_checkpoint()
    g = load_generator(checkpoint)
    job = stats.make_job(
      FLAGS.workdir,
      g,
      FLAGS.num_samples,
      FLAGS.psi,
      FLAGS.seed,
      FLAGS.samples_per_shard,
      FLAGS.class_idx,
      extra_spec={"checkpoint": str(pathlib.Path(checkpoint).absolute())},
    )
  except (FileNotFoundError, ValueError) as e:  # includes CheckpointError, SettingsMismatch
    sys.exit(f"error: {e}")
  log = distributed.log
  done = stats.done_samples(job, FLAGS.num_samples, FLAGS.samples_per_shard)
  log(
    f"population stats: {FLAGS.num_samples} samples, psi={FLAGS.psi}, {g.num_style_channels} channels, "
    f"{job.num_shards} shards ({done} samples already done) in {job.dir}; {distributed.describe()}"
  )
  progress = jobs.Progress(FLAGS.num_samples, "styles", "samples", done=done) if distributed.is_main() else None
  try:
    result = stats.population_stats(
      g,
      FLAGS.num_samples,
      FLAGS.psi,
      FLAGS.batch_size,
      FLAGS.seed,
      job,
      progress,
      FLAGS.samples_per_shard,
      FLAGS.class_idx,
    )
  except jobs.ShardsMissing as e:  # another process's shards never showed up
    sys.exit(f"error: {e}")
  if not distributed.is_main():
    return
  out = pathlib.Path(FLAGS.workdir)
  stats.save(out / "stats.npz", result, g.layout, psi=FLAGS.psi, seed=FLAGS.seed, model=job.spec["model"])
  layers = [
    {
      "index": L.index,
      "name": L.name,
      "kind": L.kind,
      "channels": L.channels,
      "mean_of_mean": float(np.mean(result["mean"][L.offset : L.offset + L.channels])),
      "mean_of_std": float(np.mean(result["std"][L.offset : L.offset + L.channels])),
    }
    for L in g.layout
  ]
  jobs.atomic_write_json(
    out / "stats_summary.json",
    {
      "checkpoint": str(checkpoint),
      "count": result["count"],
      "psi": FLAGS.psi,
      "seed": FLAGS.seed,
      "num_channels": g.num_style_channels,
      "ddof": 0,
      "layers": layers,
    },
  )
  log(f"wrote {out / 'stats.npz'} and stats_summary.json ({result['count']} samples)")


if __name__ == "__main__":
  cli.run(main)
