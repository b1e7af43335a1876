"""The "local" Jacobian mode of `ss_jax.stylespace.gradmaps.api`: forward below a cut, reverse on crops above.

A pooled output pixel depends only on a small window of the high-resolution layers, so
those layers are re-run and differentiated on crops per tile of pooled pixels and
contracted with the forward tangents at the cut (see the gradmaps module docstring)."""

import dataclasses
import functools
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np

from ss_jax.stylegan2.layers import _block_gain, _conv_part, _demod, _modulate, _noise, _post, _pre
from ss_jax.stylegan2.ops import HIGHEST
from ss_jax.stylespace.gradmaps.dense import _forward_columns, _pool, _states


# ----------------------------------------------------------------------------- local mode
# Crop geometry, per axis (both axes use the same tables): a region is (a, n), a
# (T,) int array of per-tile start positions and a static size n, at one resolution.


def _norm(a, b):
  a = np.asarray(a, np.int64)
  return a, int(np.max(np.asarray(b) - a))


def _up_in(r):
  """Low-res region an up-sampling (conv or FIR) needs for high-res region r."""
  a, n = r
  return _norm(a // 2 - 1, (a + n - 1) // 2 + 2)


def _union(r1, r2):
  return _norm(np.minimum(r1[0], r2[0]), np.maximum(r1[0] + r1[1], r2[0] + r2[1]))


@dataclasses.dataclass(frozen=True)
class _Step:
  """One layer above the cut on crops: its output region and where to cut inputs."""

  m: int
  a: np.ndarray  # (T,) output region start (x for conv, img for toRGB)
  n: int  # output region size
  off: np.ndarray  # start of the output inside the valid conv result
  skip_off: Optional[np.ndarray] = None  # same for the up-sampled shortcut / previous image
  x_in: Optional[tuple] = None  # regions of the state's x and img before this step
  img_in: Optional[tuple] = None


@dataclasses.dataclass(frozen=True)
class _CropPlan:
  cut: int  # layers >= cut run on crops
  tile: int  # pooled pixels per tile side
  num_tiles: int  # tiles per side
  x_cut: tuple  # region of the cut state's x
  img_cut: Optional[tuple]
  steps: tuple


def _has_prev_img(layout, m):
  return any(K.kind == "torgb" for K in layout[:m])


@functools.lru_cache(maxsize=64)
def _crop_plan(cfg, cut, tile, p_res):
  """Regions each layer >= cut must produce so every tile's pooled pixels are exact."""
  from ss_jax.stylegan2.config import style_layout

  layout = style_layout(cfg)
  pool = cfg.img_resolution // p_res
  if p_res % tile:
    raise ValueError(f"tile {tile} must divide the pooled resolution {p_res}")
  nt = p_res // tile
  t = np.arange(nt)
  # Backward: what each layer must produce.
  need_x, need_img, need_bx = None, (t * tile * pool, tile * pool), None
  out = {}
  for m in reversed(range(cut, len(layout))):
    L = layout[m]
    if L.kind == "torgb":
      out[m] = need_img
      need_x = need_img if need_x is None else _union(need_x, need_img)
      need_img = _up_in(need_img) if _has_prev_img(layout, m) else None
    else:
      out[m] = need_x
      if _block_gain(cfg, L) != 1.0:
        need_bx = _up_in(need_x)  # resnet shortcut from the block input
      a, n = need_x
      need_x = _up_in(need_x) if L.up else (a - 1, n + 2)
      if L.up and need_bx is not None:
        need_x, need_bx = _union(need_x, need_bx), None
  # Forward: offsets of each output inside what the layer computes from its inputs.
  steps = []
  xr, ir, br = need_x, need_img, None
  for m in range(cut, len(layout)):
    L = layout[m]
    a, n = out[m]
    skip, x_in, img_in = None, xr, ir
    if L.kind == "conv":
      if L.up:
        br = xr
        off, avail = a - (2 * xr[0] + 2), 2 * xr[1] - 4
      else:
        off, avail = a - (xr[0] + 1), xr[1] - 2
      if _block_gain(cfg, L) != 1.0:
        skip = a - (2 * br[0] + 2)
        assert skip.min() >= 0 and skip.max() + n <= 2 * br[1] - 4
      xr = out[m]
    else:
      off, avail = a - xr[0], xr[1]
      if ir is not None:
        skip = a - (2 * ir[0] + 2)
        assert skip.min() >= 0 and skip.max() + n <= 2 * ir[1] - 4
      ir = out[m]
    assert off.min() >= 0 and off.max() + n <= avail, (L.name, off, n, avail)
    steps.append(_Step(m, a, n, off, skip, x_in, img_in))
  return _CropPlan(cut, tile, nt, need_x, need_img, tuple(steps))


def _margin(region, size):
  a, n = region
  return int(max(0, -a.min(), (a + n).max() - size))


def _dslice(x, ty, tx, tab, n):
  """x[:, tab[ty]:+n, tab[tx]:+n] for (1, H, W, C) x and a (T,) int table."""
  if np.all(tab == tab[0]):  # static slice: its transpose is a pad, not a scatter
    a = int(tab[0])
    return x[:, a : a + n, a : a + n]
  tab = jnp.asarray(tab, jnp.int32)
  zero = jnp.zeros((), jnp.int32)
  return jax.lax.dynamic_slice(
    x, (zero, tab[ty].astype(jnp.int32), tab[tx].astype(jnp.int32), zero), (1, n, n, x.shape[3])
  )


class _Crop:
  """What _post needs to run a layer on a crop: shortcut/previous-image cut and mask."""

  def __init__(self, ty, tx, step, res):
    self.ty, self.tx, self.step = ty, tx, step
    a = jnp.asarray(step.a, jnp.int32)
    inside = lambda t: ((jnp.arange(step.n) + a[t]) >= 0) & ((jnp.arange(step.n) + a[t]) < res)
    # Zero outside the image: what the next conv / up-sampling sees as padding.
    self.mask = (inside(ty)[:, None] & inside(tx)[None, :])[None, :, :, None]

  def cut_skip(self, y):
    # y: a crop up-sampled with zero padding; its first 2 px per side are not exact.
    return _dslice(y, self.ty, self.tx, self.step.skip_off + 2, self.step.n)


def _crop_layers(g, steps, ty, tx, state, s, noises):
  """The layers of `steps` on one tile's crops: crop state -> crop state."""
  cfg = g.config
  syn = g.params["synthesis"]
  for st in steps:
    L, p = g.layout[st.m], syn["layers"][st.m]
    x, img, bx = state
    if L.kind == "conv" and L.up:
      bx = x
    pre = _dslice(_pre(cfg, L, p, x, s[st.m], valid=True), ty, tx, st.off, st.n)
    state = _post(cfg, L, p, syn, (x, img, bx), pre, _noise_crop(noises, st, ty, tx), _Crop(ty, tx, st, L.resolution))
  return state


def _noise_crop(noises, st, ty, tx):
  if st.m not in noises:
    return None
  noise_pad, margin = noises[st.m]
  return _dslice(noise_pad[None, :, :, None], ty, tx, st.a + margin, st.n)[0, :, :, 0]


def _crop_forward(g, plan, ty, tx, x0, img0, s, noises, start=0):
  """Layers plan.steps[start:] on one tile's crops -> pooled tile (img_c, tile, tile)."""
  return _pool(_crop_layers(g, plan.steps[start:], ty, tx, (x0, img0, None), s, noises)[1], plan.tile)[0]


def _crop_tangents(g, steps, ty, tx, state, dstate, s, ds, noises, us, dems):
  """Tangent of the crop layers `steps`, linear in (dstate, ds), at primal crops whose convs are
  not recomputed: us[m] is layer m's stored conv output crop (before demodulation), dems[m] its
  demodulation (d (1, Cout), sum of squared weights (Cin, Cout)); ds: m -> (1, C) style tangents
  of the considered layers. Only elementwise work and 1x1 toRGB convs run on primal values.
  Returns the tangent state after the steps."""
  cfg = g.config
  syn = g.params["synthesis"]
  for st in steps:
    L, p = g.layout[st.m], syn["layers"][st.m]
    (x, img, bx), (dx, dimg, dbx) = state, dstate
    if L.kind == "conv" and L.up:
      bx, dbx = x, dx
    s_m, ds_m = s[st.m], ds.get(st.m)
    cut = lambda v: _dslice(v, ty, tx, st.off, st.n)
    if L.kind == "conv":
      h_t = _modulate(L, dx, s_m) + (0.0 if ds_m is None else _modulate(L, x, ds_m))
      d, wsq = dems[st.m]
      pre = us[st.m] * d[:, None, None, :]
      pre_t = cut(_conv_part(cfg, L, p, h_t, valid=True)) * d[:, None, None, :]
      if ds_m is not None:  # d(demodulation) = -d^3 sum_i s_i ds_i sum_hw w^2
        dd = -(d**3) * jnp.matmul(s_m * ds_m, wsq, precision=HIGHEST)
        pre_t = pre_t + us[st.m] * dd[:, None, None, :]
    elif ds_m is None:
      pre, pre_t = jax.jvp(lambda x_: cut(_pre(cfg, L, p, x_, s_m, valid=True)), (x,), (dx,))
    else:
      pre, pre_t = jax.jvp(lambda x_, s_: cut(_pre(cfg, L, p, x_, s_, valid=True)), (x, s_m), (dx, ds_m))
    crop, noise = _Crop(ty, tx, st, L.resolution), _noise_crop(noises, st, ty, tx)
    post = lambda st_, pre_: _post(cfg, L, p, syn, st_, pre_, noise, crop)
    state, dstate = jax.jvp(post, ((x, img, bx), pre), ((dx, dimg, dbx), pre_t))
  return dstate


def _primals(g, s, state, cut, split):
  """Full-size layers [cut, split) from the state at cut: (u, state at split), u: m -> the conv
  output before demodulation (1, R, R, Cout) of every conv layer (what _crop_tangents slices)."""
  us = {}
  for m in range(cut, split):
    L, p = g.layout[m], g.params["synthesis"]["layers"][m]
    if L.kind == "conv" and L.up:
      state = (state[0], state[1], state[0])
    pre = _conv_part(g.config, L, p, _modulate(L, state[0], s[m]))
    d = _demod(g.config, L, p, s[m])
    if d is not None:
      us[m] = pre
      pre = pre * d[:, None, None, :]
    state = _post(g.config, L, p, g.params["synthesis"], state, pre, _noise(g, g.layout, m))
  return us, state


def _padded(v, region):
  """v (1, R, R, C) zero padded by the margin that region (a, n) needs, and that margin."""
  mg = _margin(region, v.shape[1])
  return jnp.pad(v, ((0, 0), (mg, mg), (mg, mg), (0, 0))), mg


def _tile_vjps(g, s, plan, state, above, want_cut_grads, batch, tiles=None, split=0):
  """Reverse mode on every tile's crops (or on the tile ids `tiles` (k,), unshaped: benchmarks).

  Layers [plan.cut, split) run transposed (jax.linear_transpose of _crop_tangents) at
  primal crops cut from one full-size forward pass (no primal recomputation per tile); layers
  from split on (all if split <= plan.cut) are re-run on the crops and differentiated by jax.vjp.
  Returns (gx, gimg, ja): d pooled tile / d (cut-state crops) as (T, T, M, n, n, C)
  and (T, T, M, n_i, n_i, img_c) (None unless want_cut_grads / no image at the cut)
  and d pooled tile / d s for the considered layers above the cut, (T, T, M, C_above);
  M = img_c * tile * tile cotangents per tile.
  """
  nt, cfg = plan.num_tiles, g.config
  j = max(0, split - plan.cut)  # steps run transposed at stored primals
  low, high = plan.steps[:j], plan.steps[j:]
  above_low = tuple(m for m in above if m < plan.cut + j)
  above_high = tuple(m for m in above if m >= plan.cut + j)
  x_cut, img_cut = state[0], state[1]
  xpad, mx = _padded(x_cut, plan.x_cut)
  if img_cut is not None:
    ipad, mi = _padded(img_cut, plan.img_cut)
  noises = {}
  for st in plan.steps:
    if g.layout[st.m].kind == "conv":
      nz = _noise(g, g.layout, st.m).astype(x_cut.dtype)
      mg = _margin((st.a, st.n), nz.shape[0])
      noises[st.m] = (jnp.pad(nz, mg), mg)
  if j:
    us, state_k = _primals(g, s, state, plan.cut, plan.cut + j)
    upad = {st.m: _padded(us[st.m], (st.a, st.n)) for st in low if st.m in us}
    syn = g.params["synthesis"]["layers"]
    dems = {m: (_demod(cfg, g.layout[m], syn[m], s[m]), jnp.sum(jnp.square(syn[m]["weight"]), axis=(0, 1))) for m in us}
    xkpad, mk = _padded(state_k[0], high[0].x_in)
    if high[0].img_in is not None:
      ikpad, mki = _padded(state_k[1], high[0].img_in)

  def tile_fn(tid):
    ty, tx = tid // nt, tid % nt
    x0 = _dslice(xpad, ty, tx, plan.x_cut[0] + mx, plan.x_cut[1])
    i0 = None if img_cut is None else _dslice(ipad, ty, tx, plan.img_cut[0] + mi, plan.img_cut[1])
    if j:
      xk = _dslice(xkpad, ty, tx, high[0].x_in[0] + mk, high[0].x_in[1])
      ik = None if high[0].img_in is None else _dslice(ikpad, ty, tx, high[0].img_in[0] + mki, high[0].img_in[1])
    else:
      xk, ik = x0, i0

    def f(xk, ik, sa):
      s2 = list(s)
      for m, v in zip(above_high, sa):
        s2[m] = v
      return _crop_forward(g, plan, ty, tx, xk, ik, s2, noises, start=j)

    sa = tuple(s[m] for m in above_high)
    if want_cut_grads or j:
      y, pull = jax.vjp(f, xk, ik, sa)
    else:
      y, pull = jax.vjp(lambda sa: f(xk, ik, sa), sa)
    cts = jnp.eye(y.size, dtype=y.dtype).reshape((y.size,) + y.shape)
    grads = jax.vmap(pull)(cts)
    gs = grads[-1]
    if j:
      u_c = {st.m: _dslice(upad[st.m][0], ty, tx, st.a + upad[st.m][1], st.n) for st in low if st.m in upad}

      def lin(dx0, di0, dsa):
        prim = (x0, i0, None)
        dst = _crop_tangents(g, low, ty, tx, prim, (dx0, di0, None), s, dict(zip(above_low, dsa)), noises, u_c, dems)
        return dst[0], dst[1]

      lin_t = jax.linear_transpose(lin, x0, i0, tuple(s[m] for m in above_low))
      grads = jax.vmap(lin_t)((grads[0], grads[1]))
      gs = tuple(grads[2]) + tuple(gs)
    ja = jnp.concatenate([v[:, 0] for v in gs], axis=1) if gs else jnp.zeros((y.size, 0), y.dtype)
    if not want_cut_grads:
      return None, None, ja
    return grads[0][:, 0], (None if grads[1] is None else grads[1][:, 0]), ja

  if tiles is not None:
    return jax.lax.map(tile_fn, tiles, batch_size=min(batch, len(tiles)))
  out = jax.lax.map(tile_fn, jnp.arange(nt * nt), batch_size=min(batch, nt * nt))
  return jax.tree.map(lambda v: v.reshape((nt, nt) + v.shape[1:]), out)


def _contraction_tables(region, size):
  """Index tables pairing cut positions j with the (tile, window offset) that read them.

  Returns (pt, pe, pv) (size, Q): tiles / offsets / validity of the Q pairs per j,
  and (ij, iq, iv) (T, n): for every tile and offset its j and slot q.
  """
  a, n = region
  pairs = [[] for _ in range(size)]
  ij = np.zeros((len(a), n), np.int32)
  iq = np.zeros((len(a), n), np.int32)
  iv = np.zeros((len(a), n), np.float32)
  for t, at in enumerate(a):
    for e in range(n):
      j = int(at) + e
      if 0 <= j < size:
        ij[t, e], iq[t, e], iv[t, e] = j, len(pairs[j]), 1.0
        pairs[j].append((t, e))
  q = max(1, max(len(p) for p in pairs))
  pt = np.zeros((size, q), np.int32)
  pe = np.zeros((size, q), np.int32)
  pv = np.zeros((size, q), np.float32)
  for j, p in enumerate(pairs):
    for k, (t, e) in enumerate(p):
      pt[j, k], pe[j, k], pv[j, k] = t, e, 1.0
  return (pt, pe, pv), (ij, iq, iv)


def _rows(gcut, tables):
  """Regroup tile gradients by cut position: (T, T, M, n, n, C) -> (R, R, Q, Q, M, C)."""
  (pt, pe, pv), _ = tables
  b = lambda v, y: v[:, None, :, None] if y else v[None, :, None, :]
  rows = gcut[b(pt, 1), b(pt, 0), :, b(pe, 1), b(pe, 0), :]
  return rows * (b(pv, 1) * b(pv, 0)).astype(rows.dtype)[..., None, None]


def _contract(rows, tables, tangent):
  """sum_window G[tile] * T[window of tile]: rows (R, R, Q, Q, M, C), tangent (k, R, R, C) -> (T, T, M, k)."""
  _, (ij, iq, iv) = tables
  y = jnp.einsum("abqrmo,kabo->abqrmk", rows, tangent, precision=HIGHEST)
  b = lambda v, y: v[:, None, :, None] if y else v[None, :, None, :]
  picked = y[b(ij, 1), b(ij, 0), b(iq, 1), b(iq, 0)]  # (T, T, n, n, M, k)
  w = (b(iv, 1) * b(iv, 0)).astype(picked.dtype)[..., None, None]
  return jnp.sum(picked * w, axis=(2, 3))


def _regular(a):
  """(g, s) with a[t] == a[0] + s * (t // g) for the (T,) tile starts a (g | T, s >= 0), or None."""
  t = np.arange(len(a))
  for g in range(1, len(a) + 1):
    if len(a) % g == 0:
      s = int(a[g] - a[0]) if g < len(a) else 0
      if s >= 0 and np.array_equal(a, a[0] + s * (t // g)):
        return g, s
  return None


def _contract_windows(gcut, region, tangent):
  """_contract without regrouping: sum over window offsets (e, f) of G[tile, ..., e, f, :] * T[:, a_y + e,
  a_x + f, :], for tile starts a = a0 + s * (t // g) (`_regular`): at each offset the tiles of a group read
  one tangent pixel, so the tangent is a strided slice (zero padded outside the map). gcut (T, T, M, n, n,
  C), tangent (k, R, R, C) -> (T, T, M, k); no (R, R, Q, Q, M, C) copy of gcut."""
  a, n = region
  g, s = _regular(a)
  nt, m_, c_ = gcut.shape[0], gcut.shape[2], gcut.shape[-1]
  k, r = tangent.shape[0], tangent.shape[1]
  ng = nt // g
  lo, hi = max(0, -int(a.min())), max(0, int((a + n).max()) - r)
  tp = jnp.pad(tangent, ((0, 0), (lo, hi), (lo, hi), (0, 0)))
  span = s * (ng - 1) + 1
  zero = jnp.zeros((), jnp.int32)

  def body(acc, o):
    e, f = o // n, o % n
    gef = jax.lax.dynamic_slice(gcut, (zero, zero, zero, e, f, zero), (nt, nt, m_, 1, 1, c_))
    gef = gef.reshape(ng, g, ng, g, m_, c_)
    tw = jax.lax.dynamic_slice(tp, (zero, a[0] + lo + e, a[0] + lo + f, zero), (k, span, span, c_))
    tw = tw[:, :: max(s, 1), :: max(s, 1)]  # (k, ng, ng, C)
    return acc + jnp.einsum("pyqxmc,kpqc->pyqxmk", gef, tw, precision=HIGHEST), None

  acc = jnp.zeros((ng, g, ng, g, m_, k), gcut.dtype)
  acc, _ = jax.lax.scan(body, acc, jnp.arange(n * n, dtype=jnp.int32))
  return acc.reshape(nt, nt, m_, k)


def _contraction(gcut, region, size):
  """tangent (k, R, R, C) -> (T, T, M, k): _contract on gcut regrouped by position, or with REGROUP = False
  and regular tile starts _contract_windows (no regrouped copy of gcut)."""
  if not REGROUP and _regular(region[0]) is not None:
    return functools.partial(_contract_windows, gcut, region)
  tables = _contraction_tables(region, size)
  return functools.partial(_contract, _rows(gcut, tables), tables)


# True (default): regroup the cut gradients by position, one large matmul per position; False: window
# offset by window offset where the tile starts are regular, 49 small matmuls per chunk of tangents.
# At 1024 px (bench_gradmap_stream, variant windows) False saves 0.07 GB of XLA temporaries per image
# and costs 2-3 CPU s per image.
REGROUP = True


def _tiles_to_image(v, img_c, tile):
  """(T, T, M, K) with M = (img_c, tile, tile) -> (K, img_c, T*tile, T*tile)."""
  nt = v.shape[0]
  v = v.reshape(nt, nt, img_c, tile, tile, v.shape[-1])
  return v.transpose(5, 2, 0, 3, 1, 4).reshape(v.shape[-1], img_c, nt * tile, nt * tile)


def _jac_local(g, s, res, layers, chunk, cut, tile, tile_batch, split=0):
  """Per image (s: tuple of (1, C_l)) -> (C_considered, img_c, P, P)."""
  cfg = g.config
  p_res = min(res, cfg.img_resolution)
  plan = _crop_plan(cfg, cut, tile, p_res)
  below = tuple(m for m in layers if m < cut)
  above = tuple(m for m in layers if m >= cut)
  states = _states(g, s, cut)
  gx, gi, ja = _tile_vjps(g, s, plan, states[cut], above, bool(below), tile_batch, split=split)
  parts = []
  if below:
    size = states[cut][0].shape[1]
    contract_x = _contraction(gx, plan.x_cut, size)
    if gi is not None:
      contract_i = _contraction(gi, plan.img_cut, size)

    def consume(t):
      tx, ti = t
      j = contract_x(tx)
      if gi is not None:
        j = j + contract_i(ti)
      return _tiles_to_image(j, cfg.img_channels, tile)

    readout = lambda st: (st[0][0], None if st[1] is None else st[1][0])
    parts.append(_forward_columns(g, s, below, chunk, states, cut, readout, consume))
  if above:
    parts.append(_tiles_to_image(ja, cfg.img_channels, tile))
  return jnp.concatenate(parts, axis=0)
