"""Checkpoint converters: official StyleGAN2 / StyleGAN3 / BiSeNet files -> plain configs and numpy arrays.

The untrusted-file readers (converters/io/: pickles and torch files through an allow-list of
data-only stand-ins) and the format mappings (nvidia, tensorflow, rosinality: tensor names ->
the parameter tree). Nothing here imports ss_jax; the library builds its generators and parsers
from what these return (ss_jax.load_generator, ss_jax.parser). Only the command line,
`python -m converters SRC OUT` (converters/__main__.py), imports the library.
"""

import pathlib

from converters.io import CheckpointError, sniff_format
from converters.io.safe_pickle import reading


def read_generator(path):
  """Read a generator checkpoint of any supported format.

  Returns:
    (config, params_fn, info): config a dict of GeneratorConfig fields; params_fn(cfg, layout)
    -> (params, buffers) numpy trees for the library's config object and its style layout
    (buffers["w_avg"] may be None: not stored in the file); info a dict (format, network, path).
    A StyleGAN3 network (NVIDIA stylegan3 pickle) gives a dict of StyleGAN3Config fields plus
    "family": "stylegan3", and its params_fn takes the config's layer table instead of the
    layout (see converters/nvidia_sg3.py).
  """
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
      raise CheckpointError(
        f"{path}: a BiSeNet face-parser state dict, not a generator "
        "(load it with ss_jax.parser.face_parser.load_parser)"
      )
  else:
    raise CheckpointError(f"{path}: no generator converter for format {kind!r}")
  with reading(path, "checkpoint"):  # format errors of a corrupt file -> CheckpointError
    config, read_params, info = mod.read(path)

  def params_fn(cfg, layout):
    with reading(path, "checkpoint"):  # the tensor mapping's format errors, too
      return read_params(cfg, layout)

  return config, params_fn, dict(info, path=str(path))
