"""Population statistics of S (per-channel mean/std, ddof=0) over generated samples.

  python -m experiments.style_stats --num_samples=100000 --psi=0.7 --workdir=out/stats
  python -m experiments.style_stats --checkpoint=ffhq.pkl --workdir=out/ffhq_stats

Resumable: rerunning with the same flags computes only the missing shards, with any
number of devices or processes. Several processes (docs/scaling.md): add
--coordinator_address=HOST:PORT --num_processes=M --process_id=i (or --distributed on a
TPU pod slice / SLURM); each computes its own shards and process 0 merges.
Writes WORKDIR/stats.npz (mean, std, count, layer offsets) and stats_summary.json
(pipeline: ss_jax/stylespace/stats_run.py).
"""

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
  from ss_jax.stylespace import stats_run

  # ValueError includes CheckpointError, SettingsMismatch
  _distributed_flags.run_pipeline(stats_run, (FileNotFoundError, ValueError))


if __name__ == "__main__":
  cli.run(main)
