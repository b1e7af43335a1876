"""python -m converters SRC OUT: convert a checkpoint into an ss-jax directory.

Exit status 0 on success, 1 with a one-line error otherwise (nothing written).
"""
import sys

USAGE = "usage: python -m converters SRC OUT"


def main(argv):
  if len(argv) != 3 or argv[1] in ("-h", "--help"):
    print(USAGE, file=sys.stderr)
    return 2
  src, out = argv[1], argv[2]
  from converters import bisenet, describe, load_checkpoint
  from ss_jax.checkpoint import save_generator
  from ss_jax.io import CheckpointError
  try:
    if bisenet.looks_like_bisenet(src):  # a face-parser state dict, not a generator
      bisenet.convert(src, out)
      return 0
    g, info = load_checkpoint(src)
  except (CheckpointError, FileNotFoundError, ValueError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 1
  for line in describe(g, info):
    print(line)
  save_generator(g, out, source=info)
  print(f"wrote {out}")
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv))
