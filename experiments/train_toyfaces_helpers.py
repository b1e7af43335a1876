"""Train the ToyFaces part segmenter and attribute classifier.

  python -m experiments.train_toyfaces_helpers --workdir=out/toyfaces_helpers --install

The defaults (segmenter 1200 steps, classifier 2400 steps, batch 16 each)
are the settings of the shipped models: about 9 + 4 minutes on 2 busy CPU
cores. --steps=N sets both step counts (unless a per-model flag is given);
0 skips a model.

Writes WORKDIR/segmenter/, WORKDIR/classifier/ (config.json + params.npz),
WORKDIR/metrics.json (held-out mIoU and per-part IoU, per-attribute accuracy
and AUC, on clean and degraded renders) and WORKDIR/*_train.npz checkpoints,
so a rerun with the same settings resumes (or only re-evaluates).
--install copies the models into ss_jax/assets/toyfaces/.
"""

import sys

from absl import flags

from ss_jax.runtime import cli

flags.DEFINE_string("workdir", "out/toyfaces_helpers", "Output and checkpoint directory.")
flags.DEFINE_integer("steps", None, "Training steps for both models (default: per-model flags).")
flags.DEFINE_integer("segmenter_steps", None, "Segmenter steps (default --steps, else 1200); 0 skips it.")
flags.DEFINE_integer("classifier_steps", None, "Classifier steps (default --steps, else 2400); 0 skips it.")
flags.DEFINE_integer("segmenter_batch", 16, "Segmenter batch size.")
flags.DEFINE_integer("classifier_batch", 16, "Classifier batch size.")
flags.DEFINE_integer("eval_images", 1024, "Held-out renders for the metrics.")
flags.DEFINE_bool("install", False, "Copy the trained models into ss_jax/assets/toyfaces/.")
cli.non_negative("steps", "segmenter_steps", "classifier_steps")
cli.positive("segmenter_batch", "classifier_batch", "eval_images")
FLAGS = flags.FLAGS


def main(argv):
  del argv
  import dataclasses
  from ss_jax.runtime import jobs
  from ss_jax.toyfaces import train_helpers as th

  def settings(steps, default_steps, default_fn, batch):
    steps = steps if steps is not None else FLAGS.steps if FLAGS.steps is not None else default_steps
    return dataclasses.replace(default_fn(steps), batch_size=batch) if steps > 0 else None

  try:
    th.train_and_export(
      FLAGS.workdir,
      settings(FLAGS.segmenter_steps, 1200, th.default_segmenter_settings, FLAGS.segmenter_batch),
      settings(FLAGS.classifier_steps, 2400, th.default_classifier_settings, FLAGS.classifier_batch),
      eval_images=FLAGS.eval_images,
      install_assets=FLAGS.install,
    )
  except jobs.SettingsMismatch as e:
    sys.exit(f"error: {e}")


if __name__ == "__main__":
  cli.run(main)
