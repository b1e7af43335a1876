"""Measure a ToyFaces generator against fresh renders (README's quality table).

python -m experiments.toyfaces_quality --num_images=2000 --outdir=out/quality
"""

import sys

from absl import flags

from ss_jax.runtime import cli

flags.DEFINE_string("checkpoint", None, "Generator (default: the embedded ToyFaces model).")
flags.DEFINE_integer("num_images", 2000, "Images per set.")
flags.DEFINE_float("psi", 1.0, "Truncation of the generated set.")
flags.DEFINE_string("outdir", "out/toyfaces_quality", "Output directory.")
cli.positive("num_images")
cli.finite("psi")
FLAGS = flags.FLAGS


def main(argv):
  del argv
  import jax
  from ss_jax.runtime import defaults, images, jobs, outputs
  from ss_jax.stylegan2.checkpoint import load_generator
  from ss_jax.stylegan2.generator import Generator
  from ss_jax.toyfaces import models
  from ss_jax.toyfaces.eval import quality

  try:
    g = load_generator(FLAGS.checkpoint or defaults.default_checkpoint())
    classifier, segmenter = models.load_classifier(), models.load_segmenter()
  except (FileNotFoundError, ValueError) as e:
    sys.exit(f"error: {e}")
  rep = quality.quality_report(
    g, Generator.random(g.config, jax.random.PRNGKey(0)), classifier, segmenter, FLAGS.num_images, FLAGS.psi
  )
  out = outputs.claim(FLAGS.outdir, "images")
  for k, v in rep.pop("images").items():
    images.save_png(out / f"{k}.png", images.make_grid(v[:64]))
  jobs.atomic_write_json(out / "quality.json", rep)
  text = quality.format_report(rep)
  jobs.atomic_write_text(out / "quality.md", text + "\n")
  print(text)


if __name__ == "__main__":
  cli.run(main)
