"""Generate images from seeds: one PNG per seed plus a grid.

  python -m experiments.generate --seeds=0-7 --psi=0.7 --outdir=out/generate
  python -m experiments.generate --checkpoint=ffhq.pkl --seeds=0-15 --outdir=out/ffhq

Without --checkpoint the embedded ToyFaces model is used.
"""

import sys

from absl import flags

from ss_jax.runtime import cli

flags.DEFINE_string(
  "checkpoint",
  None,
  "Converted dir, NVIDIA .pkl (PyTorch/TF) or rosinality .pt; default: the embedded ToyFaces generator.",
)
flags.DEFINE_string("seeds", "0-7", "Seeds, e.g. '0-7' or '1,5,10-12'.")
flags.DEFINE_float("psi", 0.7, "Truncation psi (1 = none).")
flags.DEFINE_integer("class_idx", 0, "Class label for conditional models.")
flags.DEFINE_string("outdir", "out/generate", "Output directory.")
flags.DEFINE_integer("batch_size", 8, "Images per jitted batch.")
cli.seed_list("seeds")
cli.finite("psi")
cli.positive("batch_size")
cli.non_negative("class_idx")
FLAGS = flags.FLAGS


def main(argv):
  del argv
  import numpy as np
  from converters.io import CheckpointError
  from ss_jax.runtime import defaults, images, outputs
  from ss_jax.runtime.seeds import parse_seeds
  from ss_jax.stylegan2 import sampling
  from ss_jax.stylegan2.checkpoint import load_generator

  out = outputs.claim(FLAGS.outdir, "images")  # never into a folder of the user's files
  try:
    seeds = parse_seeds(FLAGS.seeds)
    g = load_generator(FLAGS.checkpoint or defaults.default_checkpoint())
  except (CheckpointError, FileNotFoundError, ValueError) as e:
    sys.exit(f"error: {e}")
  cfg = g.config
  c = sampling.one_hot(np.full(len(seeds), FLAGS.class_idx), cfg.c_dim)
  z = sampling.z_from_seeds(seeds, cfg.z_dim)
  print(f"generating {len(seeds)} images at {cfg.img_resolution} px, psi={FLAGS.psi}")
  x = images.to_uint8(sampling.generate(g, z, c, FLAGS.psi, FLAGS.batch_size))
  for seed, im in zip(seeds, x):
    images.save_png(out / f"seed{seed:04d}.png", im)
  images.save_png(out / "grid.png", images.make_grid(x))
  print(f"wrote {len(seeds)} images and grid.png to {out}")


if __name__ == "__main__":
  cli.run(main)
