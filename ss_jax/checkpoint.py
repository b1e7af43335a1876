"""Converted-generator directories (orbax params + JSON config) and `load_generator`.

Layout of a converted directory:
  DIR/config.json   {"format": "ss-jax-generator", "version": 1, "family": "stylegan2" | "stylegan3",
                     "config": {...}, "source": {...}}   (no family: stylegan2)
  DIR/state/        orbax PyTree checkpoint of {"params": ..., "buffers": ...}
"""
import json
import pathlib

import jax
import numpy as np

from ss_jax import jobs
from ss_jax.config import GeneratorConfig
from ss_jax.generator import Generator, init_params
from ss_jax.stylegan3 import StyleGAN3Config, StyleGAN3Generator
from ss_jax.stylegan3 import generator as sg3_generator

FORMAT = "ss-jax-generator"
VERSION = 1


def _abstract_state(cfg):
  init = sg3_generator.init_params if isinstance(cfg, StyleGAN3Config) else init_params
  params, buffers = jax.eval_shape(lambda: init(cfg, jax.random.PRNGKey(0)))
  return {"params": params, "buffers": buffers}


def save_generator(g: Generator, directory, source=None):
  """Write g atomically: a temporary sibling directory is renamed into place when complete."""
  import orbax.checkpoint as ocp
  with jobs.atomic_directory(directory) as tmp:
    state = jax.tree.map(np.asarray, {"params": g.params, "buffers": g.buffers})
    with ocp.StandardCheckpointer() as ckpt:
      ckpt.save(tmp / "state", state)
    meta = {"format": FORMAT, "version": VERSION, "family": getattr(g.config, "family", "stylegan2"),
            "config": g.config.to_dict(), "source": source or {}}
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
  family = meta.get("family", "stylegan2")
  if family not in ("stylegan2", "stylegan3"):
    raise ValueError(f"{meta_path}: unknown generator family {family!r}")
  cls, config_cls = ((StyleGAN3Generator, StyleGAN3Config) if family == "stylegan3" else (Generator, GeneratorConfig))
  cfg = config_cls.from_dict(meta["config"])
  with ocp.StandardCheckpointer() as ckpt:
    state = ckpt.restore(directory / "state", _abstract_state(cfg))
  return cls(state["params"], state["buffers"], cfg), meta


def load_generator(path):
  """A Generator from a converted directory, an NVIDIA .pkl (PyTorch or TF) or a rosinality .pt."""
  path = pathlib.Path(path)
  if not path.exists():
    raise FileNotFoundError(f"checkpoint not found: {path}")
  if path.is_dir():
    return load_converted(path)[0]
  from converters import load_checkpoint  # format readers live with the converters
  return load_checkpoint(path)[0]
