"""Locally-active channels from stored gradient maps and semantic masks (step 2).

  python -m experiments.detect_local --workdir=out/local                     # ToyFaces segmenter
  python -m experiments.detect_local --workdir=out/ffhq --labels_dir=parsed/ --categories=ffhq
  python -m experiments.detect_local --workdir=out/ffhq --segmenter=my.parser:segment --categories=ffhq

Masks: --labels_dir holds one class-index PNG per image named seed0001.png (by seed) or
00001.png (by position); --segmenter is a registered name or "module:function" mapping
images (N, H, W, 3) in [-1, 1] to (N, H, W) labels. Scores are resumable shards under
WORKDIR/<name>/; the thresholds only affect the final step. Writes detections.json,
local.npz, layer_histogram.json/.png and mean_maps.npz there, and (unless --noverify, which
label PNGs imply) verified.json: every detection edited on held-out seeds (see
experiments/_verify_flags.py and docs/verification.md). After `experiments.gradient_maps
--stream` (no stored maps) the sums are read from WORKDIR/gradstats (the masks and
--discount were fixed by that run) and stats.npz is written too; --score and verification
work the same (ss_jax.stylespace.verified_detection.score_workdir).
"""

import sys

from absl import flags

from experiments import _verify_flags
from ss_jax.runtime import cli

flags.DEFINE_string("workdir", None, "Work directory of experiments.gradient_maps.")
flags.DEFINE_string("labels_dir", None, "Folder of label PNGs (seedNNNN.png or NNNNN.png).")
flags.DEFINE_string("segmenter", None, "Segmenter name or module:function (default: toyfaces).")
flags.DEFINE_string("categories", None, "Category table: ffhq | toyfaces (default: the segmenter's, else ffhq).")
flags.DEFINE_float("discount", 2.0, "Overlap score n / area**discount (stored maps only).")
flags.DEFINE_float("threshold", 0.5, "Minimum winning fraction.")
flags.DEFINE_float("margin", 0.25, "Minimum lead over every other category.")
flags.DEFINE_string("layers", None, "Only rank channels of these style layers, e.g. '6,8-9'.")
flags.DEFINE_integer("top_k", 20, "Ranked channels listed per category besides the detections.")
flags.DEFINE_string("name", "local", "Sub-folder of the workdir for this analysis.")
flags.mark_flag_as_required("workdir")
cli.finite("discount", "threshold", "margin")
cli.positive("top_k")
FLAGS = flags.FLAGS


def main(argv):
  del argv
  from converters.io import CheckpointError
  from ss_jax.stylespace import verified_detection
  from ss_jax.runtime import images
  from ss_jax.stylespace import locally_active, report
  from ss_jax.stylespace.gradmaps import storage

  try:
    sc = verified_detection.score_workdir(
      FLAGS.workdir,
      FLAGS.name,
      FLAGS.labels_dir,
      FLAGS.segmenter,
      FLAGS.categories,
      FLAGS.discount if FLAGS["discount"].present else None,
      sys.stderr,
    )
    job, gm, table = sc.job, sc.gm, sc.table
    layout, _, _ = storage.job_layout(gm)
    layers = locally_active.parse_layers(layout, FLAGS.layers) if FLAGS.layers else None
    result, hist = verified_detection.finalize(
      job,
      gm,
      FLAGS.score,
      FLAGS.threshold,
      FLAGS.margin,
      FLAGS.mass_threshold,
      FLAGS.top_k,
      layers,
      sc.stats,
      sc.maps_fn,
    )
    verified = None
    if FLAGS.verify and "labels_dir" not in sc.source:  # edited images need a segmenter
      verified = _verify_flags.verify(job, gm, result, sc.labels_fn, sc.source, table, sys.stderr)
    elif FLAGS.verify:
      print("note: no verification: label PNGs cannot label edited images (give --segmenter)", flush=True)
  except (CheckpointError, FileNotFoundError, ValueError) as e:
    sys.exit(f"error: {e}")
  images.save_png(
    job.dir / "layer_histogram.png", report.histogram_png(hist, [L.index for L in layout], table.categories)
  )
  for i, c in enumerate(result["categories"]):
    shown = verified["categories"][i]["verified"] if verified else c["detected"]
    top = ", ".join(e["name"] for e in shown[:5])
    ver = f", {len(verified['categories'][i]['verified'])} verified" if verified else ""
    print(f"{c['category']:>12}: {len(c['detected'])} channels{ver}{' (' + top + ', ...)' if top else ''}")
  print(
    f"wrote {job.dir}/detections.json, local.npz, layer_histogram.json/.png, mean_maps.npz"
    + (", stats.npz" if sc.streamed else "")
    + (", verified.json" if verified else "")
  )


if __name__ == "__main__":
  cli.run(main)
