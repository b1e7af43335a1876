"""The resumable gradient-map job's storage: settings, shard files and their encoding.

A gradient-map job (`gradient_map_job`) is a runtime.jobs.ShardedJob named "gradmaps" whose shard
i holds, for images i * per .. (i + 1) * per - 1: seeds, index (n,), styles (n, C_all) float32,
images (n, H, W, img_c) uint8, maps (n, C, P, P) (float32, or float16 / per-map max plus scale
(n, C)). `api.run_job` writes them; locally_active and report read them.
"""

import json
import math
import pathlib

import numpy as np

from ss_jax.runtime import jobs
from ss_jax.runtime.fingerprints import model_fingerprint
from ss_jax.stylegan3 import config as sg3_config
from ss_jax.stylespace import channels as stylespace

GRADMAPS = "gradmaps"


DTYPES = ("float32", "float16")


def check_generator(g, psi=1.0):
  """Raises ValueError if g lacks the buffers the analysis needs (constant noise, not for StyleGAN3, which
  has none; w_avg for psi != 1)."""
  noise = g.buffers.get("noise", []) if isinstance(g.buffers, dict) else None
  convs = [] if sg3_config.is_config(g.config) else [L for L in g.layout if L.kind == "conv"]
  if noise is None or len(noise) != len(convs):
    raise ValueError(
      f"checkpoint has no constant noise buffers ({0 if noise is None else len(noise)} of "
      f"{len(convs)}); gradient maps and segmented images are rendered with the stored noise"
    )
  for L, nz in zip(convs, noise):
    if tuple(np.shape(nz)) != (L.resolution, L.resolution):
      raise ValueError(
        f"checkpoint noise buffer of {L.name} has shape {np.shape(nz)}, expected ({L.resolution}, {L.resolution})"
      )
  if psi != 1.0 and np.shape(g.buffers.get("w_avg", ())) != (g.config.w_dim,):
    raise ValueError(f"checkpoint has no w_avg buffer, needed for truncation psi={psi}")


def open_job(workdir, name):
  """Re-opens an existing ShardedJob from its spec.json; a clear error if there is none."""
  path = pathlib.Path(workdir) / name / "spec.json"
  if not path.is_file():
    raise ValueError(f"no {name} job in {workdir} (missing {path})")
  spec = json.loads(path.read_text())
  num = spec.pop("num_shards")
  return jobs.ShardedJob(workdir, name, spec, num)


def job_layout(gm):
  """Style layout, flat S index of every map position (C,), and P of a gradient-map job."""
  layout = sg3_config.any_style_layout(gm.spec["config"])  # StyleGAN2 or StyleGAN3 config dict
  channels = stylespace.considered_indices(layout, gm.spec["include_torgb"])
  return layout, channels, gm.spec["pooled"]


def encode_maps(maps, dtype):
  """(N, C, P, P) float32 -> arrays to store (float16: map / its max, plus scale (N, C))."""
  if dtype == "float32":
    return {"maps": np.asarray(maps, np.float32)}
  scale = np.max(maps, axis=(2, 3)).astype(np.float32)
  scale = np.where(scale > 0, scale, 1.0).astype(np.float32)
  return {"maps": (maps / scale[:, :, None, None]).astype(np.float16), "scale": scale}


def read_gradient_maps(gm, i):
  """Shard i of a gradient-map job with maps decoded to float32 (N, C, P, P)."""
  d = gm.read(i)
  maps = d["maps"].astype(np.float32)
  if "scale" in d:
    maps *= d.pop("scale")[:, :, None, None]
  d["maps"] = maps
  return d


def gradient_map_job(
  workdir,
  g,
  seeds,
  checkpoint,
  resolution=32,
  include_torgb=False,
  psi=0.7,
  class_idx=0,
  images_per_shard=8,
  dtype="float32",
):
  """Creates or re-opens (same settings only) the gradient-map job of `seeds`."""
  return jobs.ShardedJob(
    workdir,
    GRADMAPS,
    *gradient_map_spec(g, seeds, checkpoint, resolution, include_torgb, psi, class_idx, images_per_shard, dtype),
  )


def gradient_map_spec(
  g, seeds, checkpoint, resolution=32, include_torgb=False, psi=0.7, class_idx=0, images_per_shard=8, dtype="float32"
):
  """Checked settings of a gradient-map job of `seeds` -> (spec dict, number of shards)."""
  if dtype not in DTYPES:
    raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
  if int(resolution) < 1 or int(images_per_shard) < 1:
    raise ValueError(f"resolution and images_per_shard must be positive, got {resolution}, {images_per_shard}")
  size = g.config.img_resolution
  pooled = min(int(resolution), size)
  if size % pooled:
    raise ValueError(f"resolution {resolution} must divide the image size {size}")
  if g.config.c_dim and not 0 <= class_idx < g.config.c_dim:
    raise ValueError(f"class_idx {class_idx} out of range [0, {g.config.c_dim})")
  seeds = [int(s) for s in seeds]
  if not seeds:
    raise ValueError("no seeds given")
  if pathlib.Path(checkpoint).exists():  # absolute, so report can reload it from anywhere
    checkpoint = pathlib.Path(checkpoint).resolve()
  spec = {
    "kind": "gradient_maps",
    "checkpoint": str(checkpoint),
    "config": g.config.to_dict(),
    "model": model_fingerprint(g),
    "seeds": seeds,
    "psi": float(psi),
    "class_idx": int(class_idx),
    "resolution": int(resolution),
    "pooled": pooled,
    "include_torgb": bool(include_torgb),
    "dtype": dtype,
    "images_per_shard": int(images_per_shard),
  }
  return spec, math.ceil(len(seeds) / int(images_per_shard))
