"""Locally-active channels from stored gradient maps and semantic masks (step 2).

  python -m experiments.detect_local --workdir=out/local                     # ToyFaces segmenter
  python -m experiments.detect_local --workdir=out/ffhq --labels_dir=parsed/ --categories=ffhq
  python -m experiments.detect_local --workdir=out/ffhq --segmenter=my.parser:segment --categories=ffhq

Masks: --labels_dir holds one class-index PNG per image named seed0001.png (by seed) or
00001.png (by position); --segmenter is a registered name or "module:function" mapping
images (N, H, W, 3) in [-1, 1] to (N, H, W) labels. Scores are resumable shards under
WORKDIR/<name>/; the thresholds only affect the final step. Writes detections.json,
local.npz, layer_histogram.json/.png and mean_maps.npz there. Every score shard also
holds the gradient-mass sums (ss_jax.detection_stats).

After `experiments.gradient_maps --stream` (no stored maps) the statistics are already
summed: this reads WORKDIR/gradstats and only applies the thresholds (the masks and
--discount were fixed by that run), writing the same files plus stats.npz.
"""
import pathlib
import sys
import types

from absl import app, flags

flags.DEFINE_string("workdir", None, "Work directory of experiments.gradient_maps.")
flags.DEFINE_string("labels_dir", None, "Folder of label PNGs (seedNNNN.png or NNNNN.png).")
flags.DEFINE_string("segmenter", None, "Segmenter name or module:function (default: toyfaces).")
flags.DEFINE_string("categories", None,
                    "Category table: ffhq | toyfaces (default: the segmenter's, else ffhq).")
flags.DEFINE_float("discount", 2.0, "Overlap score n / area**discount.")
flags.DEFINE_float("threshold", 0.5, "Minimum winning fraction.")
flags.DEFINE_float("margin", 0.25, "Minimum lead over every other category.")
flags.DEFINE_string("layers", None, "Only rank channels of these style layers, e.g. '6,8-9'.")
flags.DEFINE_integer("top_k", 20, "Ranked channels listed per category besides the detections.")
flags.DEFINE_string("name", "local", "Sub-folder of the workdir for this analysis.")
flags.mark_flag_as_required("workdir")
FLAGS = flags.FLAGS


def main(argv):
  del argv
  from ss_jax import detection_stats, gradmap_stream, images, locally_active, report, segmentation
  try:
    stream = gradmap_stream.open_stream(FLAGS.workdir)
    if stream is not None and not (pathlib.Path(FLAGS.workdir) / locally_active.GRADMAPS).is_dir():
      given = [f for f in ("labels_dir", "segmenter", "categories", "discount") if FLAGS[f].present]
      if given:
        raise ValueError(f"{stream.dir} holds streamed statistics: the masks and discount were fixed by "
                         f"gradient_maps --stream; drop --{', --'.join(given)}")
      layout, _, _ = locally_active.job_layout(types.SimpleNamespace(spec=stream.spec["gradient_maps"]))
      layers = locally_active.parse_layers(layout, FLAGS.layers) if FLAGS.layers else None
      table = segmentation.CategoryTable.from_json(stream.spec["table"])
      job = types.SimpleNamespace(dir=stream.dir.parent / FLAGS.name)
      result, hist = gradmap_stream.finalize(stream, job.dir, FLAGS.threshold, FLAGS.margin, FLAGS.top_k, layers)
    else:
      gm = locally_active.open_job(FLAGS.workdir, locally_active.GRADMAPS)
      layout, _, _ = locally_active.job_layout(gm)
      layers = locally_active.parse_layers(layout, FLAGS.layers) if FLAGS.layers else None
      labels_fn, source, table = segmentation.labels_source(FLAGS.labels_dir, FLAGS.segmenter, FLAGS.categories)
      job = locally_active.detection_job(FLAGS.workdir, gm, source, table, FLAGS.discount, FLAGS.name)
      print(f"scoring {gm.num_shards} shards ({len(job.pending())} to do), categories: {table.name}",
            flush=True)
      locally_active.run_detection(job, gm, labels_fn, table, progress_stream=sys.stderr,
                                   accumulate_fn=detection_stats.accumulate)
      result, hist = locally_active.finalize(job, gm, FLAGS.threshold, FLAGS.margin, FLAGS.top_k, layers)
  except (FileNotFoundError, ValueError) as e:
    sys.exit(f"error: {e}")
  images.save_png(job.dir / "layer_histogram.png",
                  report.histogram_png(hist, [L.index for L in layout], table.categories))
  for c in result["categories"]:
    top = ", ".join(e["name"] for e in c["detected"][:5])
    print(f"{c['category']:>12}: {len(c['detected'])} channels{' (' + top + ', ...)' if top else ''}")
  print(f"wrote {job.dir}/detections.json, local.npz, layer_histogram.json/.png, mean_maps.npz")


if __name__ == "__main__":
  app.run(main)
