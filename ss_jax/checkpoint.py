"""Converted-generator directories (orbax params + JSON config) and `load_generator`.

Layout of a converted directory:
  DIR/config.json   {"format": "ss-jax-generator", "version": 1, "config": {...}, "source": {...}}
  DIR/state/        orbax PyTree checkpoint of {"params": ..., "buffers": ...}
"""
import json
import pathlib

import jax
import numpy as np

from ss_jax import jobs
from ss_jax.config import GeneratorConfig
from ss_jax.generator import Generator, init_params

FORMAT = "ss-jax-generator"
VERSION = 1


def _abstract_state(cfg):
  params, buffers = jax.eval_shape(lambda: init_params(cfg, jax.random.PRNGKey(0)))
  return {"params": params, "buffers": buffers}


def save_generator(g: Generator, directory, source=None, overwrite=False):
  """Write g atomically: a temporary sibling directory is renamed into place when complete.

  `directory` must be new or empty, or a previous ss-jax output with overwrite=True
  (see jobs.atomic_directory); it is never a folder of the user's files.
  """
  import orbax.checkpoint as ocp
  with jobs.atomic_directory(directory, overwrite) as tmp:
    state = jax.tree.map(np.asarray, {"params": g.params, "buffers": g.buffers})
    with ocp.StandardCheckpointer() as ckpt:
      ckpt.save(tmp / "state", state)
    meta = {"format": FORMAT, "version": VERSION, "config": g.config.to_dict(), "source": source or {}}
    (tmp / "config.json").write_text(json.dumps(meta, indent=2))


def load_converted(directory):
  """Read a directory written by save_generator; returns (Generator, meta dict)."""
  import orbax.checkpoint as ocp
  directory = pathlib.Path(directory).absolute()
  meta_path = directory / "config.json"
  if not meta_path.is_file():
    raise FileNotFoundError(f"{directory}: not a converted ss-jax generator (no config.json)")
  meta = json.loads(meta_path.read_text())
  if meta.get("format") != FORMAT:
    raise ValueError(f"{meta_path}: format is {meta.get('format')!r}, expected {FORMAT!r}")
  cfg = GeneratorConfig.from_dict(meta["config"])
  with ocp.StandardCheckpointer() as ckpt:
    state = ckpt.restore(directory / "state", _abstract_state(cfg))
  for keypath, leaf in jax.tree_util.tree_leaves_with_path(state):
    if jax.numpy.issubdtype(leaf.dtype, jax.numpy.inexact) and not np.all(np.isfinite(np.asarray(leaf))):
      name = jax.tree_util.keystr(keypath)
      raise ValueError(f"{directory}: tensor {name} holds NaN or infinite values; refusing a generator "
                       "that would produce NaN images")
  return Generator(state["params"], state["buffers"], cfg), meta


def load_generator(path):
  """A Generator from a converted directory, an NVIDIA .pkl (PyTorch or TF) or a rosinality .pt."""
  path = pathlib.Path(path)
  if not path.exists():
    raise FileNotFoundError(f"checkpoint not found: {path}")
  if path.is_dir():
    return load_converted(path)[0]
  from converters import load_checkpoint  # format readers live with the converters
  return load_checkpoint(path)[0]
