"""Gradient-map planning: which exact method (forward / reverse / local) and what chunk, cut and tile
sizes, chosen by a multiply-add model of the generator (see api.py for the methods)."""

import dataclasses
from typing import Optional

from ss_jax.stylegan2.config import style_layout
from ss_jax.stylespace.gradmaps import stylegan3 as sg3_jacobian
from ss_jax.stylespace.gradmaps.dense import considered_layers
from ss_jax.stylespace.gradmaps.local import _contraction_tables, _crop_plan

METHODS = ("auto", "forward", "reverse", "local")


@dataclasses.dataclass(frozen=True)
class Plan:
  """How to compute J (hashable: it is a static argument of the jitted driver).

  method: "forward" | "reverse" | "local"; chunk: tangents (forward, and the
  local mode's low layers) or cotangents (reverse) per vmapped batch; cut: first
  layer index run on crops (local); tile: pooled pixels per tile side (local);
  tile_batch: tiles per vmapped batch (local); split: layers [cut, split) of the
  local mode run transposed at primal crops cut from one full-size forward pass
  instead of being re-run per tile (0: none); macs: the model's estimate of
  multiply-adds per image, for information; family: "stylegan2" or "stylegan3"
  (ss_jax.stylespace.gradmaps.stylegan3: forward / reverse only).
  """

  method: str
  chunk: Optional[int] = None
  cut: int = 0
  tile: int = 1
  tile_batch: int = 1
  macs: float = 0.0
  family: str = "stylegan2"
  split: int = 0


def _conv_macs(L, n=None, n_in=None):
  """Multiply-adds of layer L on the full map, or producing an n^2 crop (from an n_in^2 input)."""
  r = L.resolution if n is None else n
  if L.kind == "torgb":
    return r * r * L.channels * L.out_channels
  if L.up:  # transposed conv: 9 taps per low-res input pixel
    r_in = L.resolution // 2 if n_in is None else n_in
    return r_in * r_in * 9 * L.channels * L.out_channels
  return r * r * 9 * L.channels * L.out_channels


TILE_MEMORY_CAP = 1 << 30
MIN_TILE_BATCH = 2


def _tile_batch(cfg, layout, cut, tile, p_res, budget):
  """Tiles per vmapped batch so that one batch's crop activations (primal and one per cotangent,
  im2col patches included) take about `budget` bytes."""
  pl = _crop_plan(cfg, cut, tile, p_res)
  n_x = pl.x_cut[1]
  floats = n_x * n_x * layout[cut].channels
  for st in pl.steps:
    L = layout[st.m]
    if L.kind == "conv":
      n_in = n_x - 2 if L.up else st.n
      floats += n_in * n_in * 9 * L.channels + (2 * n_in if L.up else st.n) ** 2 * L.out_channels
      n_x = st.n
    else:
      floats += st.n * st.n * (L.channels + L.out_channels)
  per_tile = 4 * floats * (1 + cfg.img_channels * tile * tile)
  # Hard cap: XLA's temporaries were once ~12x this estimate (config-f 64 px: 8 tiles 2.2 GB, 4 tiles
  # 0.77 GB, compiled memory_analysis), so big crops get at most ~1 GiB in flight. Since the blocks below
  # Plan.split run transposed they no longer grow with the tiles (config-f 256 px, 2 to 8 tiles: 0.73 GB;
  # 1024 px, 1 to 8 tiles: 0.73-0.76 GB), so 2 tiles per batch are allowed whenever their estimate stays under
  # a quarter of the cap: at 1024 px (54 MB per tile) they took 9% less CPU than 1 at the same peak
  # (benchmarks/bench_gradmap_stream.py, README).
  floor = MIN_TILE_BATCH if MIN_TILE_BATCH * per_tile <= TILE_MEMORY_CAP // 4 else 1
  cap = max(TILE_MEMORY_CAP // (12 * per_tile), floor)
  b = int(max(1, min(pl.num_tiles**2, max(budget // per_tile, floor), cap)))
  while (pl.num_tiles**2) % b:  # no remainder batch (it would be compiled separately)
    b -= 1
  return b


def _default_chunk(layout, stop, budget=1 << 30):
  """Tangents / cotangents per vmapped batch so that ~4 activation-sized buffers each fit `budget` bytes."""
  act = max(
    max(L.resolution**2 * L.out_channels, (L.resolution // (2 if L.up else 1)) ** 2 * L.channels)
    for L in layout[: max(stop, 1)]
  )
  return int(max(1, budget // (4 * 4 * act)))


def _pow2_floor(n):
  """The largest power of two <= n (n >= 1). The local mode's low-layer tangents run in chunks of this
  size: at config-f widths (512 channels per layer) chunks of 128 instead of 171 (222 balanced over 512)
  make the tangents' 8 px convs and the contraction's products faster (1024 px: 33.1 vs 33.5-33.6 s per
  image, peak 1.60 vs 1.68-1.70 GB; 256 px: 27.4 vs 28.2 s; README, benchmarks/bench_gradmap_stream.py
  variant chunk222)."""
  return 1 << (max(1, int(n)).bit_length() - 1)


def _contraction_chunk(cfg, layout, cut, tile, p_res, budget=128 << 20):
  """Low-layer tangents per chunk so that the local mode's contraction product (R, R, Q, Q, M, k)
  takes about `budget` bytes (at 1024 px config-f, k = 2048 made it 1.2 GB)."""
  if cut == 0:
    return 1 << 30
  (pt, _, _), _ = _contraction_tables(_crop_plan(cfg, cut, tile, p_res).x_cut, layout[cut - 1].resolution)
  per = 4 * (layout[cut - 1].resolution * pt.shape[1]) ** 2 * cfg.img_channels * tile * tile
  return int(max(1, budget // per))


SPLIT_MIN_REDUNDANCY = 3.0
SPLIT_MEMORY = 256 << 20


def _default_split(cfg, layout, cut, tile, p_res):
  """First layer of the local mode re-run on crops per tile; the blocks below it run transposed at
  stored full-size primals. A block is stored while its crops cover its map >= SPLIT_MIN_REDUNDANCY
  times over (re-running it per tile costs that many full-size forward passes) and the stored conv
  outputs stay under SPLIT_MEMORY bytes; the last block is always re-run. 0: none stored."""
  pl = _crop_plan(cfg, cut, tile, p_res)
  ups = [st for st in pl.steps if layout[st.m].kind == "conv" and layout[st.m].up]
  split, mem = 0, 0
  for prev, st in zip(ups, ups[1:]):
    L = layout[prev.m]
    mem += 4 * 2 * L.resolution**2 * L.out_channels
    if pl.num_tiles**2 * prev.n**2 < SPLIT_MIN_REDUNDANCY * L.resolution**2 or mem > SPLIT_MEMORY:
      break
    split = st.m
  return split


def _cut_choices(layout):
  return [0] + [m for m, L in enumerate(layout) if L.kind == "conv" and L.up]


def _local_macs(cfg, layout, layers, cut, tile, p_res):
  """Multiply-add model of the local mode (crop VJPs + low-layer tangents + contraction)."""
  pl = _crop_plan(cfg, cut, tile, p_res)
  m_ct = cfg.img_channels * tile * tile
  crop = 0.0
  n_x = pl.x_cut[1]
  for st in pl.steps:
    L = layout[st.m]
    crop += _conv_macs(L, st.n, n_x)
    if L.kind == "conv":
      n_x = st.n
  above = pl.num_tiles**2 * (1 + m_ct) * crop
  below = [m for m in layers if m < cut]
  fwd = sum(layout[m].channels * sum(_conv_macs(layout[l]) for l in range(m + 1, cut)) for m in below)
  c_below = sum(layout[m].channels for m in below)
  contr = 0.0
  if below:
    size = layout[cut - 1].resolution
    (pt, _, _), _ = _contraction_tables(pl.x_cut, size)
    contr = (size * pt.shape[1]) ** 2 * m_ct * layout[cut].channels * c_below
  return above + fwd + contr


def plan(
  cfg,
  resolution=32,
  include_torgb=False,
  method="auto",
  chunk_size=None,
  cut_resolution=None,
  tile=None,
  tile_batch=None,
  split=None,
):
  """Choose how to compute the Jacobian; `jacobian`/`gradient_maps` accept the result as method.

  method "auto" takes the cheapest of forward / reverse / local by a multiply-add
  model. For "local", cut_resolution (layers at resolutions above it run on crops,
  0: all layers) and tile (pooled pixels per tile side) default to the model's
  best; tile_batch (tiles per vmapped batch) defaults to a memory budget; split (layer
  index, 0: none) defaults to `_default_split`.
  StyleGAN3 configs get "forward" or "reverse" (ss_jax.stylespace.gradmaps.stylegan3).
  """
  if getattr(cfg, "family", "stylegan2") == "stylegan3":
    if chunk_size is not None and int(chunk_size) < 1:
      raise ValueError(f"chunk_size must be positive, got {chunk_size}")
    layers = considered_layers(sg3_jacobian.style_layout(cfg), include_torgb)
    m, chunk, macs = sg3_jacobian.plan_method(cfg, layers, resolution, method, chunk_size)
    return Plan(m, chunk, macs=macs, family="stylegan3")
  if method not in METHODS:
    raise ValueError(f"method must be one of {METHODS}, got {method!r}")
  if chunk_size is not None and int(chunk_size) < 1:
    raise ValueError(f"chunk_size must be positive, got {chunk_size}")
  layout = style_layout(cfg)
  layers = considered_layers(layout, include_torgb)
  p_res = min(int(resolution), cfg.img_resolution)
  total = sum(_conv_macs(L) for L in layout)
  n_out = cfg.img_channels * p_res * p_res
  fwd = sum(layout[m].channels * sum(_conv_macs(layout[l]) for l in range(m + 1, len(layout))) for m in layers)
  rev = 2.0 * n_out * total
  # Local: try every cut (at a block boundary) and a few tile sizes.
  best = None
  cuts = _cut_choices(layout)
  if cut_resolution is not None:
    cuts = [0] if cut_resolution == 0 else [m for m in cuts if m and layout[m].resolution == 2 * cut_resolution]
    if not cuts:
      raise ValueError(
        f"cut_resolution must be 0 or a block resolution below {cfg.img_resolution}, got {cut_resolution}"
      )
  tiles = [tile] if tile else [t for t in (1, 2, 4) if p_res % t == 0]
  for c in cuts:
    for t in tiles:
      cost = _local_macs(cfg, layout, layers, c, t, p_res)
      if best is None or cost < best[0]:
        best = (cost, c, t)
  if method == "auto":
    method = min([("forward", fwd), ("reverse", rev), ("local", best[0])], key=lambda kv: kv[1])[0]
  if method == "forward":
    return Plan("forward", int(chunk_size or _default_chunk(layout, len(layout))), macs=fwd)
  if method == "reverse":
    return Plan("reverse", int(chunk_size or _default_chunk(layout, len(layout))), macs=rev)
  cost, cut, t = best
  chunk = int(
    chunk_size or _pow2_floor(min(_default_chunk(layout, cut), _contraction_chunk(cfg, layout, cut, t, p_res)))
  )
  if tile_batch is None:  # ~128 MiB of crop activations per vmapped batch (measured: smaller batches of
    tile_batch = _tile_batch(cfg, layout, cut, t, p_res, 128 << 20)  # big crops underuse the matmuls)
  if split is None:
    split = _default_split(cfg, layout, cut, t, p_res)
  elif split and not (cut < split < len(layout) and layout[split].kind == "conv" and layout[split].up):
    raise ValueError(f"split must be 0 or a block's first layer above the cut {cut}, got {split}")
  return Plan("local", chunk, cut, t, int(tile_batch), cost, split=int(split))
