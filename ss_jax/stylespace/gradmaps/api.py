"""Exact StyleSpace gradient maps: |d pooled image / d s_c| for every style channel.

  maps = gradient_maps(g, g.styles(ws))           # (N, C_conv, 32, 32) float32
  j = jacobian(g, styles, include_torgb=True)     # signed, (N, C, img_c, P, P)

Definition (StyleSpace `invert_mask.py` + `align_mask.py`, with constant noise; see
shared/fixtures/gradmaps/README.md): render the image from its styles with the
checkpoint's constant noise, box-average the raw output to P x P (P = min(R, image
size): no pooling when the image is not larger than R), take the exact Jacobian J
(img_c * P * P outputs) w.r.t. every considered style channel (conv layers, plus
toRGB with include_torgb; the others are held fixed), and average |J| over colour.
Channels come in flat-S order with the unconsidered layers left out.

Three exact ways to get J, each one `jax.jit` over the image batch:

* "forward": per style layer l, `jax.linearize` the network from layer l's
  modulated-conv output to the pooled image (layers before l run primal-only,
  once) and `vmap` the linear map over chunks of the layer's channel tangents.
  The tangent a channel injects into its own layer is built in closed form
  (a one-channel conv plus the demodulation term), not by a dense conv.
* "reverse": one `jax.vjp` of the pooled image, `vmap` of the pullback over
  chunks of the img_c * P * P one-hot cotangents.
* "local": forward mode below a cut resolution, reverse mode above it on crops.
  A pooled pixel depends only on a small window of the high-resolution layers,
  so for every tile of pooled pixels those layers are re-run on crops (VALID
  convs, zero outside the image) and differentiated there (`jax.vjp` per tile,
  `vmap` over its cotangents and over tiles). The crops' gradients w.r.t. the
  cut activations are regrouped by cut position and contracted with the forward
  tangents of the low layers (a batched matmul per position). This drops the
  dense high-resolution work that dominates both other modes. The blocks just
  above the cut, whose crops overlap most (at 1024 px a tile's 9x9 crop of a
  16x16 map), are not re-run per tile: their convs run once at full size, and
  per tile only the transpose of their tangent map runs (`jax.linear_transpose`
  at primal crops cut from those full-size outputs; Plan.split).

StyleGAN3 generators get "forward" or "reverse" (ss_jax.stylespace.gradmaps.stylegan3, which
says why "local" is not offered for them).

method="auto" takes the cheapest by the multiply-add model of `plan` (local on
StyleGAN2 models of 32 px and up: for the 32 px fixture n1 3x fewer MACs than
forward, at 256 px config-f widths 55x fewer). Measured on the shared 2-core CPU
at low load (benchmarks/bench_gradmaps.py; PyTorch's best is torch.func jvp):

  n1 (448 conv channels)   local 0.18-0.20 s/image, forward 0.51, reverse 16;
                           PyTorch 1.4 s
  r1 (416)                 local 0.16, forward 0.22; PyTorch 0.9 s
  256 px config-f (5,760)  local 102 s/image, forward ~71 min and reverse ~58 min
                           (estimated from chunks); PyTorch ~57 min

Crop up-convs run as their four stride phases plus the blur (9 taps per input pixel,
`stylegan2.layers.UP_PHASES`; before: one folded 36-tap conv: 2.1-2.3x less time in
the crop VJPs at 1024 px config-f widths, measured with an earlier version of
benchmarks/bench_gradmap_stream.py), each phase only where the kept outputs read it
(`layers.UP_TRIM`). At 1024 px config-f widths, see the README for the current
per-image time and memory (benchmarks/bench_gradmap_stream.py: before vs now).

The generator is piecewise smooth (leaky ReLU, clamping): where a pre-activation
lies within rounding of a kink, methods that round differently may take
different one-sided derivatives there; elsewhere they agree to float32 noise.

Images are mapped with `lax.map` inside `shard_map` over a 1-D device mesh
('data'); the generator is replicated and the batch padded to a multiple of the
device count (the padding is dropped from the result). `run_job` runs a
resumable gradient-map job (`storage.gradient_map_job`) on 1 device, N
devices or M processes x N devices: each process maps its own shards of images
over the global mesh, in lock-step rounds (ss_jax.runtime.distributed).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from ss_jax.runtime import distributed, memory
from ss_jax.stylegan2.generator import Generator, flatten_styles
from ss_jax.stylespace.gradmaps.dense import _jac_forward, _jac_reverse, considered_layers
from ss_jax.stylespace.gradmaps.local import _jac_local
from ss_jax.stylespace.gradmaps.planning import METHODS, Plan, plan
from ss_jax.stylespace.gradmaps import stylegan3 as sg3_jacobian

__all__ = ["METHODS", "Plan", "considered_layers", "gradient_maps", "jacobian", "map_shards", "plan", "run_job"]


# ----------------------------------------------------------------------------- driver


def _per_image(g, s, *, res, layers, pl, maps):
  s = tuple(v[None] for v in s)
  if pl.family == "stylegan3":
    j = sg3_jacobian.per_image(g, s, res, layers, pl.method, pl.chunk)
  elif pl.method == "forward":
    j = _jac_forward(g, s, res, layers, pl.chunk)
  elif pl.method == "reverse":
    j = _jac_reverse(g, s, res, layers, pl.chunk)
  else:
    j = _jac_local(g, s, res, layers, pl.chunk, pl.cut, pl.tile, pl.tile_batch, pl.split)
  return jnp.mean(jnp.abs(j), axis=1) if maps else j


def _sharded(g, s, *, res, layers, pl, maps, mesh):
  """Per-image Jacobians/maps of a 'data'-sharded batch: lax.map over each device's images."""
  fn = functools.partial(_per_image, res=res, layers=layers, pl=pl, maps=maps)
  local = lambda g, s: jax.lax.map(lambda si: fn(g, si), s)
  return jax.shard_map(local, mesh=mesh, in_specs=(P(), P("data")), out_specs=P("data"), check_vma=False)(g, s)


@functools.partial(jax.jit, static_argnames=("res", "layers", "pl", "maps", "mesh", "n"))
def _batched(g, s, *, res, layers, pl, maps, mesh, n):
  out = _sharded(g, s, res=res, layers=layers, pl=pl, maps=maps, mesh=mesh)
  return jax.sharding.reshard(out, NamedSharding(mesh, P()))[:n]  # gather, drop the padding


def _as_styles(g, styles):
  if not isinstance(styles, (tuple, list)):
    styles = jnp.asarray(styles)
    if styles.ndim != 2 or styles.shape[1] != g.num_style_channels:
      raise ValueError(f"flat styles must have shape (N, {g.num_style_channels}), got {styles.shape}")
    styles = tuple(styles[:, L.offset : L.offset + L.channels] for L in g.layout)
  styles = [jnp.asarray(v) for v in styles]
  styles = tuple(v if jnp.issubdtype(v.dtype, jnp.floating) else v.astype(jnp.float32) for v in styles)
  if len(styles) != len(g.layout):
    raise ValueError(f"expected {len(g.layout)} style blocks, got {len(styles)}")
  for L, v in zip(g.layout, styles):
    if v.ndim != 2 or v.shape[1] != L.channels or v.shape[0] != styles[0].shape[0]:
      raise ValueError(f"style block {L.index} ({L.name}) must have shape (N, {L.channels}), got {v.shape}")
  return styles


def _run(g, styles, resolution, include_torgb, chunk_size, method, mesh, maps):
  styles = _as_styles(g, styles)
  res = int(resolution)
  size = g.config.img_resolution
  if res < 1 or (size > res and size % res):
    raise ValueError(f"resolution {res} must divide the image size {size}")
  layers = considered_layers(g.layout, include_torgb)
  pl = method if isinstance(method, Plan) else plan(g.config, res, include_torgb, method, chunk_size)
  mesh = distributed.auto_axes(mesh or distributed.default_mesh())
  n = styles[0].shape[0]
  pad = (-n) % mesh.devices.size
  if pad:  # repeat the last image so padded rows stay finite; dropped in _batched
    styles = tuple(jnp.concatenate([v, jnp.repeat(v[-1:], pad, axis=0)]) for v in styles)
  if distributed.spans_processes(mesh):  # host values, the same on every process
    styles = tuple(np.asarray(v) for v in styles)
  styles = jax.device_put(styles, NamedSharding(mesh, P("data")))
  g = distributed.replicate(g, mesh)
  kw = dict(res=res, layers=layers, pl=pl, maps=maps, mesh=mesh, n=n)
  if not any(isinstance(v, jax.core.Tracer) for v in jax.tree.leaves((g, styles))):
    _batched.lower(g, styles, **kw).compile()  # compile first (a cache hit after the first call) and
    memory.release_free_heap()  # return the compiler's freed heap before the program's buffers
  return _batched(g, styles, **kw)


def jacobian(g: Generator, styles, resolution=32, include_torgb=False, chunk_size=None, method="auto", mesh=None):
  """Exact Jacobian of the pooled image w.r.t. the considered style channels.

  Args:
    g: the generator.
    styles: tuple of (N, C_l) style blocks (g.styles(ws)) or flat (N, sum C_l).
    resolution: pooled size R; images larger than R are box-averaged to R x R
      (R must divide the image size), smaller or equal ones are used as is.
    include_torgb: also differentiate the toRGB styles (else they stay fixed).
    chunk_size: tangents (forward, and the low layers of "local") or cotangents
      (reverse) per vmapped batch, to bound memory; None: sized for ~1 GiB.
    method: "auto" | "forward" | "reverse" | "local" (see module docstring), or a
      Plan from `plan(...)` (e.g. to fix the local mode's cut and tile).
    mesh: 1-D jax Mesh with axis "data" to shard images over; default: all devices
      (of every process: then every process passes the same styles and gets all maps;
      `run_job` splits a gradient-map job between processes instead).
  Returns:
    (N, C, img_channels, P, P) in the styles' float dtype; C = considered channels
    in flat-S order (toRGB layers left out unless include_torgb), NCHW pixels.
  """
  return _run(g, styles, resolution, include_torgb, chunk_size, method, mesh, maps=False)


def gradient_maps(g: Generator, styles, resolution=32, include_torgb=False, chunk_size=None, method="auto", mesh=None):
  """StyleSpace gradient maps: |jacobian(...)| averaged over colour channels.

  Returns (N, C, P, P) in the styles' float dtype (float32 normally), P =
  min(resolution, image size), channels in flat-S order (conv layers only unless
  include_torgb). Arguments as for `jacobian`; the reduction happens per image
  inside the jitted computation, so the signed Jacobian is never stored whole.
  """
  return _run(g, styles, resolution, include_torgb, chunk_size, method, mesh, maps=True)


# ----------------------------------------------------------------------------- the resumable job


def _render_step(g, z, c, psi):
  """(g, z (B, z_dim), c (B, c_dim), psi) -> (flat S (B, C), images (B, H, W, img_c)), const noise."""
  s = g.styles(g.mapping(z, c, psi))
  return flatten_styles(s), g.synthesis(s, noise_mode="const")


@functools.lru_cache(maxsize=None)
def _maps_step(res, layers, pl, mesh):
  """(g, flat S (B, C)) -> maps (B, C_considered, P, P), sharded like its input (a map_batches step)."""

  def step(g, flat):
    s = tuple(flat[:, L.offset : L.offset + L.channels] for L in g.layout)
    return _sharded(g, s, res=res, layers=layers, pl=pl, maps=True, mesh=mesh)

  return step


def map_shards(spec, shards, g, chunk_size=None, method="auto", mesh=None):
  """Renders and maps shards of a gradient-map job spec, in lock-step rounds over processes.

  spec: a gradient-map job's settings (`storage.gradient_map_spec`); shards:
  this process's shard indices (e.g. job.pending()). Every process must call this
  and consume the whole generator (see ss_jax.runtime.distributed.schedule).
  Yields (i, index (n,), seeds (n,), flat styles (n, C_all) float32, images (n, H, W,
  img_c) float, maps (n, C, P, P) float32) per round; i is None (and n = 0) in a
  round where this process has nothing left.
  """
  from ss_jax.stylegan2 import sampling

  seeds, per = np.asarray(spec["seeds"], np.int64), int(spec["images_per_shard"])
  res, rgb = int(spec["resolution"]), bool(spec["include_torgb"])
  layers = considered_layers(g.layout, rgb)
  channels = sum(g.layout[m].channels for m in layers)
  pooled = int(spec["pooled"])
  pl = method if isinstance(method, Plan) else plan(g.config, res, rgb, method, chunk_size)
  mesh = distributed.auto_axes(mesh or distributed.default_mesh())
  g = distributed.replicate(g, mesh)
  prepare = sampling.seed_inputs(g.config.z_dim, g.config.c_dim, int(spec["class_idx"]))
  maps_step = _maps_step(res, layers, pl, mesh)
  for i in distributed.schedule(shards, mesh):
    idx = np.arange(i * per, min((i + 1) * per, len(seeds))) if i is not None else np.zeros(0, np.int64)
    batch = seeds[idx]
    out = list(distributed.map_batches(_render_step, g, (batch,), (np.float32(spec["psi"]),), per, mesh, prepare))
    flat = np.concatenate([o[0] for o in out])
    x = np.concatenate([o[1] for o in out])
    maps = np.concatenate(list(distributed.map_batches(maps_step, g, (flat,), (), per, mesh)))
    if i is not None and maps.shape != (len(idx), channels, pooled, pooled):
      raise ValueError(f"gradient maps have shape {maps.shape}, expected ({len(idx)}, {channels}, {pooled}, {pooled})")
    yield i, idx, batch, flat.astype(np.float32), x, maps.astype(np.float32)


def run_job(gm, g, chunk_size=None, method="auto", mesh=None, progress=None):
  """Computes the missing shards of a gradient-map job on every device of every process.

  gm: from `ss_jax.stylespace.gradmaps.storage.gradient_map_job` (settings: seeds, psi, class,
  resolution, dtype, images per shard). Each process renders and maps its own
  pending shards (gm.pending(), round-robin), a shard's images sharded over the
  mesh; rounds are lock-step across processes (ss_jax.runtime.distributed). Shard files
  (storage.py): seeds, index (n,), styles (n, C_all) float32, images (n, H, W, img_c) uint8,
  maps (n, C, P, P) (+ scale for float16).
  Returns when this process's shards are written; call
  `distributed.wait_for_shards(gm)` before reading the others' shards.

  Args:
    chunk_size, method: as for `gradient_maps` (method may be a Plan).
    mesh: 1-D mesh 'data' (default: every device of every process).
    progress: optional object with update(n), called with images per shard.
  Returns:
    Images mapped by this process.
  """
  from ss_jax.runtime import images as images_lib
  from ss_jax.stylespace.gradmaps import storage

  storage.check_generator(g, gm.spec["psi"])
  done = 0
  for i, idx, batch, flat, x, maps in map_shards(gm.spec, gm.pending(), g, chunk_size, method, mesh):
    if i is None:
      continue
    gm.write(
      i,
      seeds=batch,
      index=idx,
      styles=flat,
      images=images_lib.to_uint8(x),
      **storage.encode_maps(maps, gm.spec["dtype"]),
    )
    done += len(idx)
    if progress is not None:
      progress.update(len(idx))
  return done
