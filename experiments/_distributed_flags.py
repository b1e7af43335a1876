"""Flags shared by the binaries that run on several processes (docs/scaling.md).

  python -m experiments.style_stats ... --coordinator_address=HOST0:1234 --num_processes=2 --process_id=0
  python -m experiments.style_stats ... --distributed        # TPU pod slice, SLURM, Open MPI: auto-detect

Without any of them (and without env JAX_COORDINATOR_ADDRESS) a binary is one
process over its local devices, as before.
"""

from absl import flags

flags.DEFINE_string(
  "coordinator_address",
  None,
  "host:port of process 0 for a multi-process run (default: env JAX_COORDINATOR_ADDRESS; unset: single process).",
)
flags.DEFINE_integer("num_processes", None, "Number of processes (default: env JAX_NUM_PROCESSES).")
flags.DEFINE_integer("process_id", None, "This process's index 0..num_processes-1 (default: env JAX_PROCESS_ID).")
flags.DEFINE_bool(
  "distributed",
  False,
  "Join a multi-process run with JAX's cluster auto-detection (TPU pod slices, SLURM, Open MPI, Kubernetes).",
)
FLAGS = flags.FLAGS


def initialize():
  """ss_jax.runtime.distributed.initialize from the flags; True in a multi-process run. Call first in main."""
  from ss_jax.runtime import distributed

  return distributed.initialize(
    FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id, auto=FLAGS.distributed
  )


def run_pipeline(pipeline, errors):
  """The sharded binaries' main: `pipeline.prepare(Settings from the flags)`, then `pipeline.run`.

  pipeline: a library module with Settings (fields = the binary's flags), prepare and run (e.g.
  ss_jax.dci.dci_run). The settings are read before this process joins a multi-process run;
  `errors` raised while preparing, or another process's shards that never show up
  (jobs.ShardsMissing), end the binary with one `error: ...` line.
  """
  from ss_jax.runtime import cli, jobs

  with cli.exit_on(*errors):
    settings = cli.config_from_flags(pipeline.Settings)
    initialize()
    prepared = pipeline.prepare(settings)
  with cli.exit_on(jobs.ShardsMissing):
    pipeline.run(prepared)
