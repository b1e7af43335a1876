"""Checkpoint converters: official StyleGAN2 and StyleGAN3 files -> ss-jax generators.

`python -m converters SRC OUT` writes a converted directory; `load_checkpoint`
reads any supported file directly.
"""
import pathlib

from ss_jax.io import CheckpointError, sniff_format


def load_checkpoint(path):
  """Read a generator checkpoint of any supported format; returns (Generator, info dict)."""
  path = pathlib.Path(path)
  if not path.is_file():
    raise FileNotFoundError(f"checkpoint not found: {path}")
  kind = sniff_format(path)
  if kind == "nvidia_pkl":
    from converters import nvidia as mod
  elif kind == "tf_pkl":
    from converters import tensorflow as mod
  elif kind in ("torch_zip", "torch_legacy"):
    from converters import bisenet, rosinality as mod
    if bisenet.looks_like_bisenet(path):
      raise CheckpointError(f"{path}: a BiSeNet face-parser state dict, not a generator "
                            "(load it with ss_jax.face_parser.load_parser)")
  else:
    raise CheckpointError(f"{path}: no generator converter for format {kind!r}")
  g, info = mod.load(path)
  info = dict(info, path=str(path))
  return g, info


def describe(g, info):
  """Lines summarising a loaded generator (what the converter prints)."""
  cfg = g.config
  layout = g.layout
  if getattr(cfg, "family", "stylegan2") == "stylegan3":
    return _describe_sg3(g, info)
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


def _describe_sg3(g, info):
  cfg, layout = g.config, g.layout
  conv = sum(L.channels for L in layout if L.kind == "conv")
  rgb = sum(L.channels for L in layout if L.kind == "torgb")
  return [f"format:          {info.get('format')} ({info.get('network')})",
          f"resolution:      {cfg.img_resolution} px, {cfg.img_channels} channels, StyleGAN3-{cfg.variant}, "
          f"{cfg.num_layers} layers + toRGB",
          f"z_dim / w_dim:   {cfg.z_dim} / {cfg.w_dim}, c_dim {cfg.c_dim}, mapping layers {cfg.mapping_layers}",
          f"num_ws:          {cfg.num_ws}",
          f"style layers:    {len(layout)}; style channels {4 + conv + rgb} (4 input + {conv} conv + {rgb} toRGB)"]
