"""python -m converters SRC OUT: convert a checkpoint into an ss-jax directory.

The command line is the one part of converters/ that uses the library (it builds the generator
or parser and writes it). Exit status 0 on success, 1 with a one-line error otherwise (nothing
written).
"""
import sys

USAGE = "usage: python -m converters SRC OUT"


def describe(g, info):
  """Lines summarising a loaded generator (what the converter prints)."""
  cfg = g.config
  layout = g.layout
  conv = sum(L.channels for L in layout if L.kind == "conv")
  rgb = sum(L.channels for L in layout if L.kind == "torgb")
  lines = [f"format:          {info.get('format')} ({info.get('network')})",
           f"resolution:      {cfg.img_resolution} px, {cfg.img_channels} channels, architecture {cfg.architecture}",
           f"z_dim / w_dim:   {cfg.z_dim} / {cfg.w_dim}, c_dim {cfg.c_dim}, mapping layers {cfg.mapping_layers}",
           f"num_ws:          {cfg.num_ws}",
           f"style layers:    {len(layout)}; style channels {conv + rgb} ({conv} conv + {rgb} toRGB)"]
  if "w_avg" in info:
    lines.append(f"w_avg:           {info['w_avg']}")
  return lines


def main(argv):
  if len(argv) != 3 or argv[1] in ("-h", "--help"):
    print(USAGE, file=sys.stderr)
    return 2
  src, out = argv[1], argv[2]
  from converters import bisenet
  from converters.io import CheckpointError
  from ss_jax.parser import checkpoint as parser_checkpoint
  from ss_jax.stylegan2.checkpoint import load_checkpoint, save_generator
  try:
    if bisenet.looks_like_bisenet(src):  # a face-parser state dict, not a generator
      parser_checkpoint.convert(src, out)
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
