"""A plain single-device gradient-map job runner: the reference `run_job` is checked against, and a
cheap way to fill a job with stand-in maps (`maps_fn`) for the locally-active tests."""

import jax
import numpy as np

from ss_jax.runtime import images as images_lib
from ss_jax.runtime import jobs
from ss_jax.stylegan2 import sampling
from ss_jax.stylespace.gradmaps.storage import check_generator, encode_maps, job_layout


def run_gradient_maps(gm, g, maps_fn=None, chunk_size=None, method="auto", progress_stream=None):
  """Computes the job's missing shards; returns the job.

  maps_fn: `(g, styles, resolution=, include_torgb=, chunk_size=, method=) -> (N, C, P, P)`,
    default `ss_jax.stylespace.gradmaps.api.gradient_maps` (tests inject a stand-in).
  progress_stream: where jobs.Progress reports (None: silent).
  """
  if maps_fn is None:
    from ss_jax.stylespace.gradmaps.api import gradient_maps as maps_fn
  spec = gm.spec
  check_generator(g, spec["psi"])
  seeds, per = spec["seeds"], spec["images_per_shard"]
  _, channels, pooled = job_layout(gm)
  pending = gm.pending()
  prog = None
  if progress_stream is not None:
    todo = sum(len(seeds[i * per : (i + 1) * per]) for i in pending)
    prog = jobs.Progress(len(seeds), "gradient maps", "images", stream=progress_stream, done=len(seeds) - todo)
  render = jax.jit(_styles_and_images)
  for i in pending:
    idx = np.arange(i * per, min((i + 1) * per, len(seeds)))
    batch = [seeds[j] for j in idx]
    batch += [batch[-1]] * (per - len(batch))  # one compiled shape for every shard
    z = sampling.z_from_seeds(batch, g.config.z_dim)
    c = sampling.one_hot(np.full(per, spec["class_idx"]), g.config.c_dim)
    styles, x = render(g, z, c, np.float32(spec["psi"]))
    maps = maps_fn(
      g,
      styles,
      resolution=spec["resolution"],
      include_torgb=spec["include_torgb"],
      chunk_size=chunk_size,
      method=method,
    )
    maps = np.asarray(maps, np.float32)[: len(idx)]
    if maps.shape[1:] != (len(channels), pooled, pooled):
      raise ValueError(f"gradient maps have shape {maps.shape}, expected (N, {len(channels)}, {pooled}, {pooled})")
    flat = np.concatenate([np.asarray(s, np.float32) for s in styles], axis=1)[: len(idx)]
    gm.write(
      i,
      seeds=np.array(seeds)[idx],
      index=idx,
      styles=flat,
      images=images_lib.to_uint8(np.asarray(x)[: len(idx)]),
      **encode_maps(maps, spec["dtype"]),
    )
    if prog:
      prog.update(len(idx))
  return gm


def _styles_and_images(g, z, c, psi):
  s = g.styles(g.mapping(z, c, psi))
  return s, g.synthesis(s, noise_mode="const")
