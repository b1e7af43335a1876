"""Attribute-specific channels from exemplars: theta ranking and a resampling curve.

  python -m experiments.attribute_channels --stats=out/stats/stats.npz --seeds=3,7,12,40 \
      --workdir=out/attr_smile
  python -m experiments.attribute_channels --stats=... --codes=smiling_ws.npz --workdir=...
  python -m experiments.attribute_channels --stats=... --seeds=0-999 --logits=logits.npy \
      --attribute=1 --num_exemplars=30 --workdir=...   # top 30 of a bank by a logit column

Writes ranking.json, attribute_channels.npz, resampling_curve.json and .png.
"""
import pathlib
import sys

from absl import app, flags

flags.DEFINE_string("checkpoint", None, "Generator; default: the embedded ToyFaces generator.")
flags.DEFINE_string("stats", None, "stats.npz from experiments.style_stats.")
flags.DEFINE_string("seeds", None, "Exemplar seeds (or the bank, with --logits), e.g. '0-29'.")
flags.DEFINE_string("codes", None, ".npz with 'w' (M, w_dim) or 'ws' (M, num_ws, w_dim) exemplar codes.")
flags.DEFINE_float("psi", 0.7, "Truncation psi for --seeds.")
flags.DEFINE_string("logits", None, ".npy (N, A) attribute logits of the --seeds bank, row i = seed i.")
flags.DEFINE_integer("attribute", 0, "Logit column ranking the bank (with --logits).")
flags.DEFINE_integer("num_exemplars", 30, "Exemplars taken from the bank (with --logits).")
flags.DEFINE_bool("lowest", False, "Take the lowest logits of the bank instead of the highest.")
flags.DEFINE_bool("include_torgb", False, "Also rank toRGB channels.")
flags.DEFINE_string("restrict_to", None, "Only rank these channels: 'L_C,...' or a .json/.txt file of names.")
flags.DEFINE_integer("top_k", 50, "Channels listed in ranking.json.")
flags.DEFINE_integer("draws", 100, "Random subsets per size for the resampling curve.")
flags.DEFINE_integer("curve_seed", 0, "Seed of the resampling draws.")
flags.DEFINE_integer("batch_size", 64, "Samples per batch.")
flags.DEFINE_string("workdir", None, "Output directory.")
flags.mark_flags_as_required(["stats", "workdir"])
FLAGS = flags.FLAGS


def main(argv):
  del argv
  import numpy as np
  from ss_jax.stylespace import attribute_channels as ac
  from ss_jax.runtime import defaults, images, jobs
  from ss_jax.stylegan2 import sampling
  from ss_jax.stylespace import stats
  from ss_jax.stylegan2.checkpoint import load_generator
  out = pathlib.Path(FLAGS.workdir)
  meta = {}
  try:
    if (FLAGS.seeds is None) == (FLAGS.codes is None):
      raise ValueError("give exactly one of --seeds and --codes")
    g = load_generator(FLAGS.checkpoint or defaults.default_checkpoint())
    st = stats.load(FLAGS.stats, g.layout)
    restrict = ac.channel_list(FLAGS.restrict_to) if FLAGS.restrict_to else None
    if FLAGS.codes:
      s = ac.styles_from_codes(g, FLAGS.codes, FLAGS.batch_size)
      meta["codes"] = FLAGS.codes
    else:
      seeds = np.array(sampling.parse_seeds(FLAGS.seeds))
      if FLAGS.logits:
        logits = np.load(FLAGS.logits)
        if len(logits) != len(seeds):
          raise ValueError(f"{FLAGS.logits} has {len(logits)} rows but --seeds names {len(seeds)} samples")
        seeds = seeds[ac.top_by_attribute(logits, FLAGS.attribute, FLAGS.num_exemplars, not FLAGS.lowest)]
        meta.update(logits=FLAGS.logits, attribute=FLAGS.attribute, lowest=FLAGS.lowest)
      print(f"computing styles of {len(seeds)} exemplars (psi={FLAGS.psi})")
      s = sampling.styles_from_seeds(g, seeds, FLAGS.psi, FLAGS.batch_size)
      meta.update(seeds=seeds.tolist(), psi=FLAGS.psi)
    result = ac.find_channels(s, st["mean"], st["std"], g.layout, FLAGS.include_torgb, restrict)
  except (FileNotFoundError, ValueError) as e:  # includes CheckpointError, bad names, wrong stats
    sys.exit(f"error: {e}")
  print(f"{len(s)} exemplars; top channels: " + ", ".join(
      f"{n} ({result['theta'][f]:.2f})" for n, f in zip(result["names"][:5], result["ranking"][:5])))
  sizes = ac.default_sizes(len(s))
  print(f"resampling curve: {FLAGS.draws} draws x {len(sizes)} subset sizes")
  curve = ac.resampling_curve(s, st["mean"], st["std"], g.layout, sizes, FLAGS.draws, FLAGS.curve_seed,
                              FLAGS.include_torgb, restrict)
  meta.update(stats=FLAGS.stats, include_torgb=FLAGS.include_torgb, restrict_to=restrict)
  jobs.atomic_write_json(out / "ranking.json", ac.to_json(result, g.layout, FLAGS.top_k, **meta))
  jobs.atomic_save_npz(out / "attribute_channels.npz", theta=result["theta"], ranking=result["ranking"],
                       z_mean=result["z_mean"], styles=s)
  curve_json = ac.curve_to_json(curve, g.layout, draws=FLAGS.draws, seed=FLAGS.curve_seed)
  jobs.atomic_write_json(out / "resampling_curve.json", curve_json)
  title = f"fraction of k-exemplar draws whose top channel is {curve_json['reference']}"
  images.save_png(out / "resampling_curve.png", ac.plot_curve(curve["sizes"], curve["agreement"], title))
  print(f"wrote ranking.json, attribute_channels.npz, resampling_curve.json/.png to {out}")


if __name__ == "__main__":
  app.run(main)
