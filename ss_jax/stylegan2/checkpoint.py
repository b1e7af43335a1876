"""Generator checkpoints: official files (read by converters/), converted directories (orbax params
+ JSON config), `load_generator`, and the model fingerprint that guards resumed jobs.

Layout of a converted directory:
  DIR/config.json   {"format": "ss-jax-generator", "version": 1, "family": "stylegan2" | "stylegan3",
                     "config": {...}, "source": {...}}   (no family: stylegan2)
  DIR/state/        orbax PyTree checkpoint of {"params": ..., "buffers": ...}
"""

import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np

from ss_jax.runtime import jobs
from ss_jax.stylegan2.config import GeneratorConfig, style_layout
from ss_jax.stylegan2.generator import Generator, init_params, mapping
from ss_jax.stylegan3 import config as sg3_config
from ss_jax.stylegan3 import generator as sg3_generator

FORMAT = "ss-jax-generator"
VERSION = 1
W_AVG_SAMPLES = 100_000  # z samples of the w_avg estimate for files that do not store it


def _abstract_state(cfg):
  init = sg3_generator.init_params if sg3_config.is_config(cfg) else init_params
  params, buffers = jax.eval_shape(lambda: init(cfg, jax.random.PRNGKey(0)))
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
    meta = {
      "format": FORMAT,
      "version": VERSION,
      "family": getattr(g.config, "family", "stylegan2"),
      "config": g.config.to_dict(),
      "source": source or {},
    }
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
  cls, config_cls = (
    (sg3_generator.StyleGAN3Generator, sg3_config.StyleGAN3Config)
    if family == "stylegan3"
    else (Generator, GeneratorConfig)
  )
  cfg = config_cls.from_dict(meta["config"])
  with ocp.StandardCheckpointer() as ckpt:
    state = ckpt.restore(directory / "state", _abstract_state(cfg))
  for keypath, leaf in jax.tree_util.tree_leaves_with_path(state):
    if jax.numpy.issubdtype(leaf.dtype, jax.numpy.inexact) and not np.all(np.isfinite(np.asarray(leaf))):
      name = jax.tree_util.keystr(keypath)
      raise ValueError(
        f"{directory}: tensor {name} holds NaN or infinite values; refusing a generator that would produce NaN images"
      )
  return cls(state["params"], state["buffers"], cfg), meta


def load_generator(path):
  """A Generator from a converted directory, an NVIDIA .pkl (PyTorch or TF) or a rosinality .pt."""
  path = pathlib.Path(path)
  if not path.exists():
    raise FileNotFoundError(f"checkpoint not found: {path}")
  if path.is_dir():
    return load_converted(path)[0]
  return load_checkpoint(path)[0]


def estimate_w_avg(cfg, params, num=None, seed=0, batch=10_000):
  """Mean mapping output over num random z (default W_AVG_SAMPLES), float32 (w_dim,).

  rosinality's generate.py does the same with 4096 samples for files without latent_avg.
  """
  num = W_AVG_SAMPLES if num is None else num
  fn = jax.jit(lambda p, z: jnp.sum(mapping(cfg, p, z), axis=0))
  key = jax.random.PRNGKey(seed)
  total = np.zeros((cfg.w_dim,), np.float64)
  for start in range(0, num, batch):
    n = min(batch, num - start)
    z = jax.random.normal(jax.random.fold_in(key, start), (n, cfg.z_dim))
    total += np.asarray(fn(params, z), np.float64)
  return (total / num).astype(np.float32)


def load_checkpoint(path):
  """An official generator file (NVIDIA .pkl, PyTorch or TF; rosinality .pt) -> (generator, info).

  A stylegan3 network (config dict with "family": "stylegan3") gives a StyleGAN3Generator.

  converters/ reads the file (never executing its content) into a config dict and numpy
  arrays; the generator is built here.
  """
  import converters  # the file readers and format mappings

  config, params_fn, info = converters.read_generator(path)
  config = dict(config)
  if config.pop("family", "stylegan2") == "stylegan3":  # the layer table checks the stored layers
    from converters.io import CheckpointError

    try:
      cfg = sg3_config.StyleGAN3Config(**config)
    except ValueError as e:
      raise CheckpointError(f"{path}: unsupported StyleGAN3 configuration: {e}") from None
    params, buffers = params_fn(cfg, sg3_config.layer_table(cfg))
    return sg3_generator.StyleGAN3Generator(params, buffers, cfg), info
  cfg = GeneratorConfig(**config)
  params, buffers = params_fn(cfg, style_layout(cfg))
  if buffers.get("w_avg") is None:
    buffers["w_avg"] = estimate_w_avg(cfg, params)
    info = dict(
      info,
      w_avg=f"no latent_avg in the checkpoint: estimated as the mean mapping output "
      f"of {W_AVG_SAMPLES} random z (seed 0)",
    )
  return Generator(params, buffers, cfg), info
