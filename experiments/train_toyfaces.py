"""Train a StyleGAN2 on ToyFaces, resumably, in bounded chunks; export the EMA generator.

Train (rerun the same command to continue from the last checkpoint):
  python -m experiments.train_toyfaces --workdir=out/stylegan2_toyfaces \
      --max_minutes=8 --total_kimg=3000

Export the latest checkpoint's EMA generator as an ss-jax converted directory:
  python -m experiments.train_toyfaces --workdir=out/stylegan2_toyfaces \
      --export=out/toyfaces_generator
"""

import logging as std_logging
import os
import sys

from absl import flags

from ss_jax.runtime import cli

flags.DEFINE_string("workdir", None, "Run directory: checkpoints, samples, metrics.", required=True)
flags.DEFINE_enum(
  "config", "toyfaces_default", ["toyfaces_default", "smoke"], "Training config (ss_jax.train.configs)."
)
flags.DEFINE_float("total_kimg", None, "Training target in kimg (default: the config's).")
flags.DEFINE_float(
  "max_minutes",
  None,
  "Wall-clock budget of this invocation, compile "
  "included; then checkpoint and exit. Leave ~1 min of margin under hard limits.",
)
flags.DEFINE_integer("batch_size", None, "Override the config's batch (new runs only).")
flags.DEFINE_integer("seed", None, "Override the config's seed (new runs only).")
flags.DEFINE_string(
  "export", None, "Export the latest checkpoint's EMA generator to this directory and exit (no training)."
)
flags.DEFINE_integer("w_avg_samples", 10_000, "z samples for the exported w_avg.")
flags.DEFINE_integer("data_workers", 0, "Render workers (0: auto, processes on >= 8 cores).")
flags.DEFINE_float("log_every_s", 10.0, "Seconds between progress lines / metrics records.")
flags.DEFINE_float("sample_every_kimg", 50.0, "kimg between sample grids (0: chunk ends only).")
flags.DEFINE_float("ckpt_every_minutes", 5.0, "Minutes between checkpoints.")
flags.DEFINE_bool("fast_compile", False, "Cheap XLA CPU compilation (tests, quick CPU checks).")
cli.positive("total_kimg", "max_minutes", "batch_size", "w_avg_samples", "log_every_s", "ckpt_every_minutes")
cli.seed("seed")
cli.non_negative("data_workers", "sample_every_kimg")
flags.DEFINE_bool("overwrite", False, "Let --export replace a previous ss-jax export.")
FLAGS = flags.FLAGS


def main(argv):
  del argv
  # Libraries (orbax) log at INFO on every save, hidden by cli.run unless --verbosity;
  # progress goes to a logger of our own.
  log = std_logging.getLogger("train_toyfaces")
  log.setLevel(std_logging.INFO)
  from ss_jax.train import configs, loop, step  # pylint: disable=g-import-not-at-top

  command = " ".join([os.path.basename(sys.executable), "-m", "experiments.train_toyfaces"] + sys.argv[1:])
  if FLAGS.export:
    g, meta = loop.export_latest(
      FLAGS.workdir,
      FLAGS.export,
      source={"command": command},
      w_avg_samples=FLAGS.w_avg_samples,
      overwrite=FLAGS.overwrite,
    )
    log.info("exported step %d (%.1f kimg) EMA generator to %s", meta["step"], meta["kimg"], FLAGS.export)
    return

  cfg = configs.get_config(FLAGS.config)
  overrides = {k: getattr(FLAGS, k) for k in ("total_kimg", "batch_size", "seed") if getattr(FLAGS, k) is not None}
  cfg = cfg.replace(**overrides)

  cpus = os.cpu_count() or 1
  workers = FLAGS.data_workers or (min(8, cpus // 2) if cpus >= 8 else 1)
  stop = cli.StopRequest()  # timeout(1), Ctrl-C: checkpoint, then exit
  loop.train(
    cfg,
    FLAGS.workdir,
    max_minutes=FLAGS.max_minutes,
    data_workers=workers,
    data_processes=workers > 1,
    log_every_s=FLAGS.log_every_s,
    sample_every_kimg=FLAGS.sample_every_kimg or None,
    ckpt_every_minutes=FLAGS.ckpt_every_minutes,
    should_stop=stop,
    command=command,
    log=log.info,
    compiler_options=step.FAST_COMPILE if FLAGS.fast_compile else None,
  )
  stop.exit_if_interrupted()


if __name__ == "__main__":
  cli.run(main)
