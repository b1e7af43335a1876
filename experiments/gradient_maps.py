"""Gradient maps of generated images (StyleSpace locally-active analysis, step 1).

  python -m experiments.gradient_maps --seeds=0-99 --resolution=32 --workdir=out/local
  python -m experiments.gradient_maps --checkpoint=ffhq.pkl --seeds=0-999 --workdir=out/ffhq_local

Writes WORKDIR/gradmaps/shard_*.npz (seeds, styles, uint8 images and maps (N, C, R, R);
see ss_jax.stylespace.gradmaps.storage for the layout and sizes: FFHQ 1024 conv-only is 24.8 MB per
image in float32). Rerunning the same command resumes after a kill (with any number of
devices or processes); other settings in the same workdir are refused. Without
--checkpoint the embedded ToyFaces model is used. Several processes (docs/scaling.md):
add --coordinator_address=HOST:PORT --num_processes=M --process_id=i (or --distributed on
a TPU pod slice / SLURM); each maps its own shards of images over all devices.
Pipeline: ss_jax/stylespace/gradmaps/run.py.

--stream segments each shard's images and keeps only per-category sums (WORKDIR/gradstats,
~55 MB at 1024 px whatever the number of images; README "Streaming"); then run
`experiments.detect_local --workdir=...`, which reads them:

  python -m experiments.gradient_maps --seeds=0-999 --workdir=out/local --stream --segmenter=toyfaces
"""

from absl import flags

from experiments import _distributed_flags
from ss_jax.runtime import cli

flags.DEFINE_string(
  "checkpoint", None, "Converted dir, NVIDIA .pkl or rosinality .pt; default: the embedded ToyFaces generator."
)
flags.DEFINE_string("seeds", "0-999", "Seeds of the analysed images, e.g. '0-999'.")
flags.DEFINE_float("psi", 0.7, "Truncation psi on every w row (the official images use 0.7).")
flags.DEFINE_integer("class_idx", 0, "Class label for conditional models.")
flags.DEFINE_integer("resolution", 32, "Pooled gradient-map size R (must divide the image size).")
flags.DEFINE_bool("include_torgb", False, "Also map the toRGB style channels.")
flags.DEFINE_string("workdir", None, "Work directory (shared with detect_local and report).")
flags.DEFINE_integer("images_per_shard", 8, "Images per resumable shard.")
flags.DEFINE_enum(
  "dtype",
  "float32",
  ["float32", "float16"],
  "Storage dtype of the maps (float16 stores each map divided by its max, half the size).",
)
flags.DEFINE_integer("chunk_size", None, "Tangents/cotangents per vmapped batch (bounds memory).")
flags.DEFINE_string("method", "auto", "Jacobian method: auto, forward, reverse or local.")
flags.DEFINE_bool("stream", False, "Keep per-category detection sums instead of the maps.")
flags.DEFINE_string("labels_dir", None, "--stream: folder of label PNGs (as detect_local).")
flags.DEFINE_string("segmenter", None, "--stream: segmenter name or module:function (default: toyfaces).")
flags.DEFINE_string("categories", None, "--stream: category table (default: the segmenter's, else ffhq).")
flags.DEFINE_float("discount", 2.0, "--stream: official overlap score n / area**discount.")
flags.mark_flag_as_required("workdir")
cli.seed_list("seeds")
cli.finite("psi", "discount")
cli.non_negative("class_idx")
cli.positive("resolution", "images_per_shard", "chunk_size")
FLAGS = flags.FLAGS


def main(argv):
  del argv
  from converters.io import CheckpointError
  from ss_jax.runtime import jobs
  from ss_jax.stylespace.gradmaps import run as gradmap_run

  with cli.exit_on(CheckpointError, FileNotFoundError, ValueError):
    _distributed_flags.initialize()
    prepared = gradmap_run.prepare(cli.config_from_flags(gradmap_run.Settings))
    gradmap_run.compute(prepared)
  with cli.exit_on(jobs.ShardsMissing):  # another process's shards never showed up
    gradmap_run.finish(prepared)


if __name__ == "__main__":
  cli.run(main)
