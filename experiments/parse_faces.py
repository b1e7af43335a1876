"""Parse a folder of face images with BiSeNet: label PNGs and colourised overlays.

  python -m experiments.parse_faces --parser=79999_iter.pth --images=out/ffhq --outdir=out/parsed
  python -m experiments.parse_faces --parser=parsers/bisenet --images=DIR --outdir=OUT --resolution=256

Writes OUTDIR/labels/<stem>.png (single-channel CelebAMask-HQ class indices,
readable by `detect_local --labels_dir=OUTDIR/labels`) and
OUTDIR/overlays/<stem>.png. --parser is the official .pth or a directory
written by `python -m converters`.
"""

import sys

from absl import flags

from ss_jax.runtime import cli

flags.DEFINE_string("parser", None, "BiSeNet .pth (79999_iter.pth) or converted parser directory.")
flags.DEFINE_string("images", None, "Folder of images (png, jpg, ...).")
flags.DEFINE_string("outdir", "out/parse_faces", "Output directory.")
flags.DEFINE_integer("resolution", None, "Side of the label maps (default: each image's own size).")
flags.DEFINE_integer("input_size", 512, "Parser input side (the official pipeline uses 512).")
flags.DEFINE_integer("batch_size", 8, "Images per jitted batch (rounded up to a multiple of the devices).")
flags.DEFINE_bool("overlays", True, "Also write colourised overlays.")
flags.mark_flags_as_required(["parser", "images"])
cli.positive("resolution", "input_size", "batch_size")
FLAGS = flags.FLAGS


def main(argv):
  del argv
  from ss_jax.parser import face_parser
  from ss_jax.runtime import images
  from converters.io import CheckpointError

  try:
    images.image_files(FLAGS.images)  # fail on an empty folder before loading the parser
    parser = face_parser.load_parser(FLAGS.parser, input_size=FLAGS.input_size, batch_size=FLAGS.batch_size)
    print(f"parsing {FLAGS.images} at {FLAGS.input_size} px on {parser.mesh.devices.size} device(s)", file=sys.stderr)
    out = face_parser.parse_folder(parser, FLAGS.images, FLAGS.outdir, FLAGS.resolution, FLAGS.overlays)
  except (CheckpointError, FileNotFoundError, ValueError) as e:
    sys.exit(f"error: {e}")
  print(
    f"wrote {out['images']} label maps to {out['labels']}"
    + (f" and overlays to {out['overlays']}" if out["overlays"] else "")
  )


if __name__ == "__main__":
  cli.run(main)
