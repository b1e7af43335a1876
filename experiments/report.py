"""Static HTML report of a locally-active channel analysis (step 3).

  python -m experiments.report --workdir=out/local --stats=out/stats/stats.npz --outdir=out/report

Per category: the detected channels with their mean gradient maps (heat maps) and
manipulation strips (s_c + alpha * std_c), the per-layer histogram and the settings; with a
verified.json (detect_local's default step), the verification: measured locality against a
random baseline and edit figures on held-out seeds (ss_jax.stylespace.verification_report).
index.html links PNG files next to it (relative paths, no server needed). The
generator defaults to the checkpoint the gradient maps were computed with. Works on stored
gradient maps and on a `gradient_maps --stream` workdir alike (the first shard's images from
gradstats/examples.npz, mean maps from the summed maps).
"""

import sys

from absl import flags

from ss_jax.runtime import cli

flags.DEFINE_string("workdir", None, "Work directory of gradient_maps and detect_local.")
flags.DEFINE_string("name", "local", "Analysis sub-folder (detect_local --name).")
flags.DEFINE_string(
  "checkpoint",
  None,
  "Generator for the strips (default: the one of the gradient maps, which defaults to the embedded ToyFaces model).",
)
flags.DEFINE_string("stats", None, "stats.npz (mean, std) of experiments.style_stats; without it no strips.")
flags.DEFINE_string("outdir", None, "Output folder for index.html and its PNGs.")
flags.DEFINE_list("alphas", ["-10", "-5", "0", "5", "10"], "Edit strengths in units of the channel's std.")
flags.DEFINE_integer("max_channels", 5, "Detected channels shown per category.")
flags.DEFINE_integer("num_images", 3, "Images per manipulation strip.")
flags.DEFINE_string("channels", None, "Extra channels to show, e.g. '6_202,9_11'.")
flags.mark_flags_as_required(["workdir", "outdir"])
cli.positive("max_channels", "num_images")
FLAGS = flags.FLAGS


def main(argv):
  del argv
  from ss_jax.stylespace import report, stats
  from ss_jax.stylespace.gradmaps import storage
  from ss_jax.stylegan2.checkpoint import load_generator
  from ss_jax.stylegan3.config import any_config_from_dict
  from converters.io import CheckpointError

  try:
    alphas = [float(a) for a in FLAGS.alphas]
    spec = report.open_analysis(FLAGS.workdir, FLAGS.name).spec  # stored maps or --stream statistics
    std = None  # the generator also draws the verification figures (held-out edits)
    g = load_generator(FLAGS.checkpoint or spec["checkpoint"])
    if g.config != any_config_from_dict(spec["config"]):
      raise ValueError("the checkpoint is not the generator the gradient maps were computed with")
    storage.check_generator(g)
    if FLAGS.stats:
      std = stats.load(FLAGS.stats, g.layout)["std"]
    path = report.build_report(
      FLAGS.workdir, FLAGS.outdir, FLAGS.name, g, std, FLAGS.max_channels, alphas, FLAGS.num_images, FLAGS.channels
    )
  except (CheckpointError, FileNotFoundError, ValueError) as e:
    sys.exit(f"error: {e}")
  print(f"wrote {path}")


if __name__ == "__main__":
  cli.run(main)
