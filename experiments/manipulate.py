"""Edit S channels by alpha population stds and render a labelled grid.

  python -m experiments.manipulate --stats=out/stats/stats.npz --channels=6_202,9_11 \
      --seeds=0-3 --alphas=-10,-5,0,5,10 --outdir=out/manip
  python -m experiments.manipulate --stats=... --channels=6_202,9_11 --joint --outdir=...

Rows = channel x seed (or the joint edit x seed with --joint), columns = alphas.
Writes OUTDIR/grid.png and manipulation.json.
"""
import pathlib
import sys

from absl import app, flags

flags.DEFINE_string("checkpoint", None, "Generator; default: the embedded ToyFaces generator.")
flags.DEFINE_string("stats", None, "stats.npz from experiments.style_stats (sigma of each channel).")
flags.DEFINE_string("channels", None, "Channels 'L_C', e.g. '6_202,9_11'.")
flags.DEFINE_string("seeds", "0-3", "Seeds of the images to edit.")
flags.DEFINE_float("psi", 0.7, "Truncation psi.")
flags.DEFINE_integer("class_idx", None, "Class for conditional models (default: seed % c_dim).")
flags.DEFINE_string("alphas", "-10,-5,0,5,10", "Edit strengths in units of sigma.")
flags.DEFINE_bool("joint", False, "Move all channels together instead of one row set per channel.")
flags.DEFINE_integer("min_cell", 64, "Upscale cells narrower than this (pixels) for readable grids.")
flags.DEFINE_integer("batch_size", 8, "Images per jitted call (times the number of alphas).")
flags.DEFINE_string("outdir", "out/manipulate", "Output directory.")
flags.mark_flags_as_required(["stats", "channels"])
FLAGS = flags.FLAGS


def main(argv):
  del argv
  from ss_jax import defaults, images, jobs, manipulate, sampling, stats, stylespace
  from ss_jax.checkpoint import load_generator
  try:
    seeds = sampling.parse_seeds(FLAGS.seeds)
    alphas = manipulate.parse_alphas(FLAGS.alphas)
    g = load_generator(FLAGS.checkpoint or defaults.default_checkpoint())
    idx = manipulate.resolve_channels(g.layout, FLAGS.channels)
    st = stats.load(FLAGS.stats, g.layout)
  except (FileNotFoundError, ValueError) as e:  # includes CheckpointError, bad names, wrong stats
    sys.exit(f"error: {e}")
  names = stylespace.names_of(g.layout, idx)
  print(f"editing {', '.join(names)}{' jointly' if FLAGS.joint else ''} on {len(seeds)} images, "
        f"alphas {list(alphas)}")
  s = stats.styles_from_seeds(g, seeds, FLAGS.psi, FLAGS.batch_size, FLAGS.class_idx)
  progress = jobs.Progress(1 if FLAGS.joint else len(idx), "edits", "channels", interval=0)
  grid = manipulate.manipulation_grid(g, s, idx, alphas, st["std"], FLAGS.joint, FLAGS.batch_size,
                                      min_cell=FLAGS.min_cell, progress=progress)
  out = pathlib.Path(FLAGS.outdir)
  images.save_png(out / "grid.png", grid)
  jobs.atomic_write_json(out / "manipulation.json", {
      "channels": names, "sigma": [float(st["std"][i]) for i in idx], "alphas": list(alphas),
      "seeds": seeds, "psi": FLAGS.psi, "joint": FLAGS.joint, "stats": FLAGS.stats,
      "rows": [n for n in (["+".join(names)] if FLAGS.joint else names) for _ in seeds]})
  print(f"wrote {out / 'grid.png'} ({grid.shape[1]}x{grid.shape[0]}) and manipulation.json")


if __name__ == "__main__":
  app.run(main)
