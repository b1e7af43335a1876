"""python -m converters SRC OUT [--overwrite]: convert a checkpoint into an ss-jax directory.

OUT must be new or empty; replacing a previous converted directory needs --overwrite,
and a folder of other files is never touched. Exit status 0 on success, otherwise one
`error: ...` line (nothing written): 1 for a failure, 2 for bad usage.
"""
import sys

from absl import flags

from ss_jax.runtime import cli

USAGE = "usage: python -m converters SRC OUT [--overwrite]"
flags.DEFINE_bool("overwrite", False, "Replace OUT if it holds a previous ss-jax output.")
FLAGS = flags.FLAGS


def main(argv):
  if len(argv) != 3:
    print(f"error: expected SRC and OUT; {USAGE}", file=sys.stderr)
    return 2
  src, out = argv[1], argv[2]
  from converters import bisenet, describe, load_checkpoint
  from ss_jax.runtime import outputs
  from ss_jax.checkpoint import save_generator
  outputs.check_target(out, FLAGS.overwrite)  # before reading a possibly large checkpoint
  if bisenet.looks_like_bisenet(src):  # a face-parser state dict, not a generator
    bisenet.convert(src, out, FLAGS.overwrite)
    return 0
  g, info = load_checkpoint(src)
  for line in describe(g, info):
    print(line)
  save_generator(g, out, source=info, overwrite=FLAGS.overwrite)
  print(f"wrote {out}")
  return 0


if __name__ == "__main__":
  cli.run(main)
