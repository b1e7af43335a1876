"""BiSeNet parameters from the official state dict (read by converters.bisenet) and converted dirs.

Each bias-free conv and the eval-mode BatchNorm after it become one conv with bias
(`bisenet.fold_batchnorm`); `num_batches_tracked` entries are ignored and not required.

Converted directory (written atomically: a temporary sibling renamed into place):
  DIR/config.json  {"format": "ss-jax-bisenet", "version": 1, "config": {"num_classes": 19},
                    "bn_folded": true, "bn_eps": 1e-05, "source": {...}}
  DIR/params.npz   float32 "<conv name>/w" (k, k, C_in, C_out) and "<conv name>/b" (C_out,)
"""

import json
import pathlib
import zipfile

import numpy as np

from converters import bisenet as bisenet_file
from converters.common import TensorSource
from converters.io import CheckpointError
from ss_jax.parser import bisenet
from ss_jax.runtime import jobs, outputs

FORMAT = "ss-jax-bisenet"
VERSION = 1
_IGNORED_SUFFIX = ".num_batches_tracked"


def params_from_state_dict(sd, path):
  """Flat BiSeNet state dict (name -> array) -> (params, BiSeNetConfig), BatchNorm folded.

  Raises:
    CheckpointError: one line naming the first missing tensor (state-dict
      order), a tensor of the wrong shape, or unexpected tensors.
  """
  if not isinstance(sd, dict) or not all(isinstance(k, str) for k in sd):
    raise CheckpointError(f"{path}: expected a BiSeNet state dict (name -> tensor), found {type(sd).__name__}")
  sd = bisenet_file.strip_prefix(sd)
  head = sd.get("conv_out.conv_out.weight")
  num_classes = int(np.shape(head)[0]) if head is not None and np.ndim(head) == 4 else bisenet.NUM_CLASSES
  t = TensorSource(sd, path)
  params = {}
  for s in bisenet.conv_specs(num_classes):
    w = t.get(f"{s.name}.weight", (s.c_out, s.c_in, s.k, s.k))
    bn = ()
    if s.bn is not None:
      bn = [t.get(f"{s.bn}.{k}", (s.c_out,)) for k in ("weight", "bias", "running_mean", "running_var")]
    wf, bf = bisenet.fold_batchnorm(w, *bn)
    params[s.name] = {"w": wf, "b": bf}
  extra = [k for k in sd if k not in t.used and not k.endswith(_IGNORED_SUFFIX)]
  if extra:
    raise CheckpointError(
      f"{path}: {len(extra)} unexpected tensors for BiSeNet(n_classes={num_classes}), e.g. '{extra[0]}'"
    )
  return params, bisenet.BiSeNetConfig(num_classes)


def load(path):
  """Reads a BiSeNet `.pth` (legacy or zip torch file) -> (params, BiSeNetConfig, info dict)."""
  path = pathlib.Path(path)
  if not path.is_file():
    raise FileNotFoundError(f"face parser not found: {path}")
  sd = bisenet_file.read_state_dict(path)
  params, cfg = params_from_state_dict(sd, path)
  info = {
    "format": "BiSeNet face-parser state dict (zllrunning/face-parsing.PyTorch)",
    "network": "bisenet",
    "path": str(path),
    "tensors": len(sd),
  }
  return params, cfg, info


def describe(params, cfg, info):
  """Lines summarising a converted parser (what the converter prints)."""
  n = sum(int(np.size(p["w"])) + int(np.size(p["b"])) for p in params.values())
  return [
    f"format:          {info.get('format')}",
    f"classes:         {cfg.num_classes}",
    f"convs:           {len(params)} (eval BatchNorm folded into conv weight + bias)",
    f"parameters:      {n:,} after folding ({info.get('tensors')} state-dict tensors read)",
  ]


def save_converted(params, cfg, directory, source=None, overwrite=False):
  """Writes params + config.json to `directory` atomically (a previous output: overwrite=True)."""
  with jobs.atomic_directory(directory, overwrite) as tmp:
    flat = {f"{name}/{k}": np.asarray(v, np.float32) for name, p in params.items() for k, v in p.items()}
    np.savez(tmp / "params.npz", **flat)
    meta = {
      "format": FORMAT,
      "version": VERSION,
      "config": cfg.to_dict(),
      "bn_folded": True,
      "bn_eps": bisenet.BN_EPS,
      "source": source or {},
    }
    (tmp / "config.json").write_text(json.dumps(meta, indent=2))


def load_converted(directory):
  """Reads a directory written by save_converted -> (params, BiSeNetConfig, meta dict)."""
  directory = pathlib.Path(directory)
  meta_path = directory / "config.json"
  if not meta_path.is_file():
    raise FileNotFoundError(f"{directory}: not a converted face parser (no config.json)")
  meta = json.loads(meta_path.read_text())
  if meta.get("format") != FORMAT:
    raise ValueError(f"{meta_path}: format is {meta.get('format')!r}, expected {FORMAT!r}")
  cfg = bisenet.BiSeNetConfig.from_dict(meta["config"])
  params = {}
  try:
    with jobs.open_npz(directory / "params.npz") as z:
      for key in z.files:
        name, k = key.rsplit("/", 1)
        params.setdefault(name, {})[k] = z[key]
    bisenet.check_params(params, cfg.num_classes)
  except (ValueError, zipfile.BadZipFile, EOFError) as e:
    raise ValueError(f"{directory}: unreadable converted parser: {e}") from e
  return params, cfg, meta


def load_any(path):
  """A BiSeNet `.pth` file or a converted directory -> (params, BiSeNetConfig, info dict)."""
  path = pathlib.Path(path)
  if path.is_dir():
    params, cfg, meta = load_converted(path)
    return params, cfg, dict(meta.get("source", {}), converted=str(path))
  if not path.exists():
    raise FileNotFoundError(f"face parser not found: {path}")
  return load(path)


def convert(src, out, overwrite=False):
  """`python -m converters SRC OUT` for a parser: prints a summary, writes OUT."""
  outputs.check_target(out, overwrite)
  params, cfg, info = load(src)
  for line in describe(params, cfg, info):
    print(line)
  save_converted(params, cfg, out, source=info, overwrite=overwrite)
  print(f"wrote {out}")
