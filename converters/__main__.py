"""python -m converters SRC OUT [--overwrite]: convert a checkpoint into an ss-jax directory.

The command line is the one part of converters/ that uses the library (it builds the generator
or parser and writes it). OUT must be new or empty; replacing a previous converted directory
needs --overwrite, and a folder of other files is never touched. Exit status 0 on success,
otherwise one `error: ...` line (nothing written): 1 for a failure, 2 for bad usage.
"""

import sys

from absl import flags

from ss_jax.runtime import cli

USAGE = "usage: python -m converters SRC OUT [--overwrite]"
flags.DEFINE_bool("overwrite", False, "Replace OUT if it holds a previous ss-jax output.")
FLAGS = flags.FLAGS


def describe(g, info):
  """Lines summarising a loaded generator (what the converter prints)."""
  cfg = g.config
  layout = g.layout
  if getattr(cfg, "family", "stylegan2") == "stylegan3":
    return _describe_sg3(g, info)
  conv = sum(L.channels for L in layout if L.kind == "conv")
  rgb = sum(L.channels for L in layout if L.kind == "torgb")
  lines = [
    f"format:          {info.get('format')} ({info.get('network')})",
    f"resolution:      {cfg.img_resolution} px, {cfg.img_channels} channels, architecture {cfg.architecture}",
    f"z_dim / w_dim:   {cfg.z_dim} / {cfg.w_dim}, c_dim {cfg.c_dim}, mapping layers {cfg.mapping_layers}",
    f"num_ws:          {cfg.num_ws}",
    f"style layers:    {len(layout)}; style channels {conv + rgb} ({conv} conv + {rgb} toRGB)",
  ]
  if "w_avg" in info:
    lines.append(f"w_avg:           {info['w_avg']}")
  return lines


def _describe_sg3(g, info):
  cfg, layout = g.config, g.layout
  conv = sum(L.channels for L in layout if L.kind == "conv")
  rgb = sum(L.channels for L in layout if L.kind == "torgb")
  return [
    f"format:          {info.get('format')} ({info.get('network')})",
    f"resolution:      {cfg.img_resolution} px, {cfg.img_channels} channels, StyleGAN3-{cfg.variant}, "
    f"{cfg.num_layers} layers + toRGB",
    f"z_dim / w_dim:   {cfg.z_dim} / {cfg.w_dim}, c_dim {cfg.c_dim}, mapping layers {cfg.mapping_layers}",
    f"num_ws:          {cfg.num_ws}",
    f"style layers:    {len(layout)}; style channels {4 + conv + rgb} (4 input + {conv} conv + {rgb} toRGB)",
  ]


def main(argv):
  if len(argv) != 3:
    print(f"error: expected SRC and OUT; {USAGE}", file=sys.stderr)
    return 2
  src, out = argv[1], argv[2]
  from converters import bisenet
  from ss_jax.parser import checkpoint as parser_checkpoint
  from ss_jax.runtime import outputs
  from ss_jax.stylegan2.checkpoint import load_checkpoint, save_generator

  outputs.check_target(out, FLAGS.overwrite)  # before reading a possibly large checkpoint
  if bisenet.looks_like_bisenet(src):  # a face-parser state dict, not a generator
    parser_checkpoint.convert(src, out, FLAGS.overwrite)
    return 0
  g, info = load_checkpoint(src)
  for line in describe(g, info):
    print(line)
  save_generator(g, out, source=info, overwrite=FLAGS.overwrite)
  print(f"wrote {out}")
  return 0


if __name__ == "__main__":
  cli.run(main)
