"""Train an image -> (S, W+) encoder for a generator on generated pairs, resumably.

Train (rerun the same command to continue; --max_seconds bounds one chunk):
  python -m experiments.train_encoder --workdir=out/encoder --max_seconds=600

Evaluate the latest checkpoint and export it (here: as the shipped ToyFaces encoder):
  python -m experiments.train_encoder --workdir=out/encoder \
      --export=ss_jax/assets/toyfaces/encoder --overwrite --grid=/tmp/encoder_grid.png

--checkpoint defaults to the embedded ToyFaces generator. Settings flags
(--steps, --batch_size, --learning_rate, ...) must be the same on every chunk
of a run: a resume with other settings is refused. Progress, checkpoints and
metrics go to WORKDIR (see ss_jax.inversion.encoder_training).
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
  from ss_jax.inversion import encoder_trainer  # pylint: disable=g-import-not-at-top
  from ss_jax.inversion import encoder_training as et  # pylint: disable=g-import-not-at-top
  from ss_jax.runtime import defaults, jobs  # pylint: disable=g-import-not-at-top
  from ss_jax.stylegan2 import checkpoint  # pylint: disable=g-import-not-at-top

  log = lambda msg: print(msg, flush=True)
  command = " ".join(["python", "-m", "experiments.train_encoder"] + sys.argv[1:])
  g = checkpoint.load_generator(FLAGS.checkpoint or defaults.default_checkpoint())
  try:
    if FLAGS.export:
      encoder_trainer.export(
        FLAGS.workdir,
        FLAGS.export,
        g,
        eval_images=FLAGS.eval_images,
        render_images=FLAGS.render_images,
        command=command,
        log=log,
        overwrite=FLAGS.overwrite,
      )
      if FLAGS.grid:
        from ss_jax.inversion import encoder  # pylint: disable=g-import-not-at-top
        from PIL import Image  # pylint: disable=g-import-not-at-top

        enc = encoder.load_encoder(FLAGS.export, generator=g)
        images = (
          et.heldout_renders(8, g.config.img_resolution)
          if FLAGS.render_images
          else et.generated_heldout(g, 8, encoder_trainer.load_run(FLAGS.workdir)[0])[0]
        )
        Image.fromarray(et.comparison_grid(enc, g, images)).save(FLAGS.grid)
        log(f"grid (rows: input, G(S), G(W+), G(w_avg)) written to {FLAGS.grid}")
      return
    settings = et.TrainSettings(
      steps=FLAGS.steps,
      batch_size=FLAGS.batch_size,
      learning_rate=FLAGS.learning_rate,
      image_weight=FLAGS.image_weight,
      image_batch=FLAGS.image_batch,
      mixing_prob=FLAGS.mixing_prob,
      psi_min=FLAGS.psi_min,
      psi_max=FLAGS.psi_max,
      reuse=FLAGS.reuse,
    )
    stop = cli.StopRequest()  # timeout(1), Ctrl-C: checkpoint, then exit
    encoder_trainer.train(
      g,
      FLAGS.workdir,
      settings,
      max_seconds=FLAGS.max_seconds,
      max_steps=FLAGS.max_steps,
      eval_images=FLAGS.eval_images,
      log_every_s=FLAGS.log_every_s,
      ckpt_every_s=FLAGS.ckpt_every_s,
      should_stop=stop,
      command=command,
      log=log,
    )
    stop.exit_if_interrupted()
  except (jobs.SettingsMismatch, FileNotFoundError) as e:
    sys.exit(f"error: {e}")


if __name__ == "__main__":
  cli.run(main)
