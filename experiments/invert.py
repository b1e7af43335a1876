"""Invert real images into W, W+ or S (optimisation, encoder, or encoder + optimisation).

  python -m experiments.invert --images=photos/ --workdir=out/invert --space=s
  python -m experiments.invert --images=face.png --workdir=out/inv1 --space=wplus --steps=500 --lpips=none
  python -m experiments.invert --images=photos/ --workdir=out/hyb --mode=hybrid --steps=100
  python -m experiments.invert --images=DIR --workdir=W --edit_channels=6_202 --stats=out/stats/stats.npz

Modes: optimise (start at w_avg / styles(w_avg), --steps of Adam, ss_jax/inversion/optimise.py),
encoder (the image encoder's code, no optimisation), hybrid (encoder start + --steps).
Images (PNG/JPG/BMP/WebP, a folder or one file) must have the generator's size
unless --resize is given (then they are centre-cropped to a square and resized,
with a warning); alpha channels are dropped and greyscale images converted to
RGB, each with a warning. Images are processed in batches of --batch_size; each
finished batch is written atomically under WORKDIR/invert/, and a rerun with the
same flags skips finished batches (other flags: refused, use another --workdir).

Writes to WORKDIR:
  codes.npz             code (of --space), s (flat S), names, loss_total/mse/perceptual/noise_reg,
                        history (N, K) + history_steps, noise_<k> maps with --noise
  reconstructions/      <stem>.png per image
  reconstructions.png   original | reconstruction grid (first --grid_images images)
  edits.png             with --edit_channels: rows channel x image, columns --alphas
  invert.json           settings and mean losses
"""

from absl import flags

from ss_jax.inversion import folder
from ss_jax.runtime import cli

D = folder.get_config()
flags.DEFINE_string("images", D.images, "A folder of images or one image file.")
flags.DEFINE_string("workdir", D.workdir, "Output folder (resumable).")
flags.DEFINE_enum("space", D.space, ["w", "wplus", "s"], "Space of the codes.")
flags.DEFINE_enum(
  "mode",
  D.mode,
  ["optimise", "encoder", "hybrid"],
  "optimise: from w_avg; encoder: the encoder's code only; hybrid: encoder start + --steps.",
)
flags.DEFINE_string("checkpoint", D.checkpoint, "Generator; default: the embedded ToyFaces generator.")
flags.DEFINE_string("encoder", D.encoder, "Encoder directory for --mode=encoder/hybrid; default: the shipped one.")
flags.DEFINE_integer("steps", D.steps, "Optimisation steps (default 1000 for optimise, 100 for hybrid).")
flags.DEFINE_float("lr", D.lr, "Peak Adam learning rate (S: in units of each channel's std).")
flags.DEFINE_enum("lpips", D.lpips, ["alex", "vgg", "none"], "Perceptual loss (ss_jax.inversion.lpips) or none.")
flags.DEFINE_float("perceptual_weight", D.perceptual_weight, "Weight of the LPIPS term.")
flags.DEFINE_float("mse_weight", D.mse_weight, "Weight of the pixel MSE term (images in [-1, 1]).")
flags.DEFINE_bool("noise", D.noise, "Also optimise per-image noise maps (saved in codes.npz; edits use them).")
flags.DEFINE_float("noise_reg", D.noise_reg, "Weight of the noise-map regulariser (with --noise).")
flags.DEFINE_integer("batch_size", D.batch_size, "Images per batch (one resumable unit).")
flags.DEFINE_bool("resize", D.resize, "Resize images of another size (centre crop + Lanczos) instead of refusing them.")
flags.DEFINE_integer("seed", D.seed, "Seed of the latent noise (image i uses (seed, i)).")
flags.DEFINE_integer("history_every", D.history_every, "Record the loss every this many steps.")
flags.DEFINE_integer("chunk_steps", D.chunk_steps, "Steps between progress lines (one device loop each off CPU).")
flags.DEFINE_string("edit_channels", D.edit_channels, "Channels 'L_C' to edit in an edit grid, e.g. '6_202,9_11'.")
flags.DEFINE_string("alphas", D.alphas, "Edit strengths in units of sigma (--stats).")
flags.DEFINE_string("stats", D.stats, "stats.npz from experiments.style_stats (needed with --edit_channels).")
flags.DEFINE_integer("grid_images", D.grid_images, "Images shown in reconstructions.png and edits.png.")
flags.DEFINE_integer("min_cell", D.min_cell, "Upscale grid cells narrower than this (pixels).")
flags.mark_flags_as_required(["images", "workdir"])
cli.non_negative("steps", "perceptual_weight", "mse_weight", "noise_reg")
cli.positive("batch_size", "history_every", "chunk_steps", "grid_images", "min_cell", "lr")
cli.seed("seed")
FLAGS = flags.FLAGS


def main(argv):
  del argv
  config = cli.config_from_flags(folder.InvertConfig)
  with cli.exit_on(FileNotFoundError, ValueError):  # includes CheckpointError, SettingsMismatch, bad stats
    folder.run(config)


if __name__ == "__main__":
  cli.run(main)
