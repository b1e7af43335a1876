"""Train an image -> (S, W+) encoder for a generator on generated pairs, resumably.

Train (rerun the same command to continue; --max_seconds bounds one chunk):
  python -m experiments.train_encoder --workdir=out/encoder --max_seconds=600

Evaluate the latest checkpoint and export it (here: as the shipped ToyFaces encoder):
  python -m experiments.train_encoder --workdir=out/encoder \
      --export=ss_jax/assets/toyfaces/encoder --overwrite --grid=/tmp/encoder_grid.png

--checkpoint defaults to the embedded ToyFaces generator. Settings flags
(--steps, --batch_size, --learning_rate, ...) must be the same on every chunk
of a run: a resume with other settings is refused. Progress, checkpoints and
metrics go to WORKDIR (see ss_jax.inversion.encoder_training; pipeline:
ss_jax/inversion/encoder_run.py).
"""

import sys

from absl import flags

from ss_jax.runtime import cli

flags.DEFINE_string("workdir", None, "Run directory: checkpoints, metrics.", required=True)
flags.DEFINE_string("checkpoint", None, "Generator (default: the embedded ToyFaces model).")
flags.DEFINE_integer("steps", 4000, "Training steps of the run (sets the LR schedule).")
flags.DEFINE_integer("batch_size", 32, "Generated pairs per step.")
flags.DEFINE_float("learning_rate", 2e-3, "Peak AdamW learning rate (warmup + cosine).")
flags.DEFINE_float("image_weight", 0.0, "Weight of MSE(G(predicted S), image) (0: off).")
flags.DEFINE_integer("image_batch", 0, "Images per batch in the image loss (0: all).")
flags.DEFINE_float("mixing_prob", 0.9, "Style-mixing probability of the training pairs.")
flags.DEFINE_float("psi_min", 1.0, "Truncation psi of training pairs: uniform in [min, max].")
flags.DEFINE_float("psi_max", 1.0, "See --psi_min.")
flags.DEFINE_integer("reuse", 2, "Consecutive steps sharing one generated batch.")
flags.DEFINE_float(
  "max_seconds", None, "Wall-clock budget of this invocation (compile included); then checkpoint and exit."
)
flags.DEFINE_integer("max_steps", None, "Stop this invocation at this step (debugging).")
flags.DEFINE_integer("eval_images", 256, "Held-out generated images evaluated after each chunk and at --export.")
flags.DEFINE_integer(
  "render_images",
  256,
  "Held-out ToyFaces renders evaluated at --export (0: skip; only meaningful for the ToyFaces generator).",
)
flags.DEFINE_string(
  "export", None, "Evaluate the latest checkpoint, write the encoder to this directory and exit (no training)."
)
flags.DEFINE_string(
  "grid", None, "With --export: PNG of renders (or generated images) and their reconstructions G(S), G(W+), G(w_avg)."
)
flags.DEFINE_float("log_every_s", 30.0, "Seconds between progress lines.")
flags.DEFINE_float("ckpt_every_s", 300.0, "Seconds between checkpoints.")
cli.positive("steps", "batch_size", "learning_rate", "reuse", "max_seconds", "max_steps", "log_every_s", "ckpt_every_s")
cli.non_negative("image_weight", "image_batch", "eval_images", "render_images")
cli.finite("mixing_prob", "psi_min", "psi_max")
flags.DEFINE_bool("overwrite", False, "Let --export replace a previous ss-jax export.")
FLAGS = flags.FLAGS


def main(argv):
  del argv
  from ss_jax.inversion import encoder_run  # pylint: disable=g-import-not-at-top
  from ss_jax.runtime import jobs  # pylint: disable=g-import-not-at-top

  settings = cli.config_from_flags(encoder_run.Settings)
  command = " ".join(["python", "-m", "experiments.train_encoder"] + sys.argv[1:])
  g = encoder_run.load_generator(settings)
  with cli.exit_on(jobs.SettingsMismatch, FileNotFoundError):
    if settings.export:
      encoder_run.export(settings, g, command)
    else:
      stop = cli.StopRequest()  # timeout(1), Ctrl-C: checkpoint, then exit
      encoder_run.train(settings, g, command, should_stop=stop)
      stop.exit_if_interrupted()


if __name__ == "__main__":
  cli.run(main)
