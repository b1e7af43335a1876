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
  dense high-resolution work that dominates both other modes.

method="auto" takes the cheapest by the multiply-add model of `plan` (local on
StyleGAN2 models of 32 px and up: for the 32 px fixture n1 3x fewer MACs than
forward, at 256 px config-f widths 55x fewer). Measured on the shared 2-core CPU
at low load (benchmarks/bench_gradmaps.py; PyTorch's best is torch.func jvp):

  n1 (448 conv channels)   local 0.18-0.20 s/image, forward 0.51, reverse 16;
                           PyTorch 1.4 s
  r1 (416)                 local 0.16, forward 0.22; PyTorch 0.9 s
  256 px config-f (5,760)  local 102 s/image, forward ~71 min and reverse ~58 min
                           (estimated from chunks); PyTorch ~57 min

The generator is piecewise smooth (leaky ReLU, clamping): where a pre-activation
lies within rounding of a kink, methods that round differently may take
different one-sided derivatives there; elsewhere they agree to float32 noise.

Images are mapped with `lax.map` inside `shard_map` over a 1-D device mesh
('data'); the generator is replicated and the batch padded to a multiple of the
device count (the padding is dropped from the result).
"""
import dataclasses
import functools
import math
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from ss_jax import ops
from ss_jax.generator import HIGHEST, Generator

METHODS = ("auto", "forward", "reverse", "local")

__all__ = ["METHODS", "Plan", "considered_layers", "gradient_maps", "jacobian", "plan"]


# ----------------------------------------------------------------------------- network pieces
# The synthesis loop of ss_jax.generator, split into per-layer steps so that
# transforms can start at any layer. State = (x, img, block_x), NHWC, batched.


def _demod_eps(cfg, w):
  # Same as generator._modulated_conv: rosinality's gain-before-demod means a larger eps.
  return 1e-8 * (w.shape[0] * w.shape[1] * w.shape[2] if cfg.flavour == "rosinality" else 1)


def _conv_valid(x, w):
  """VALID correlation (N, h, w, Cin) x (kh, kw, Cin, Cout) as patches @ weight.

  Used on small crops: its VJP under vmap is a plain matmul plus pads, whereas a
  vmapped transposed lax.conv on tiny maps runs >10x slower on CPU.
  """
  kh, kw, cin, cout = w.shape
  _, h, wd, _ = x.shape
  if kh * kw > 1:
    x = jnp.concatenate([x[:, i:i + h - kh + 1, j:j + wd - kw + 1] for i in range(kh) for j in range(kw)], axis=3)
  return jnp.dot(x, w.reshape(kh * kw * cin, cout), precision=HIGHEST)


@functools.lru_cache(maxsize=None)
def _phase_taps(fir):
  """A[r, d, k] (2, 3, 3) float64: weight of 3x3 tap k for output phase r reading input p + d - 1.

  Transposed conv (stride 2) writes input p, tap k to t[2p + k]; the FIR blur
  (gain 2 per axis, padding 1) then reads t[o + j - 1]. So output o = 2p + r reads
  input p + d' with weight sum_j w[k] g[j] over r + j - 1 - k = 2 d', d' in {-1, 0, 1}.
  """
  g = np.asarray(fir, np.float64)
  g = g * 2.0 / g.sum()
  a = np.zeros((2, 3, 3))
  for r in range(2):
    for k in range(3):
      for j in range(len(g)):
        t = r + j - 1 - k
        if t % 2 == 0 and -1 <= t // 2 <= 1:
          a[r, t // 2 + 1, k] += g[j]
  return a


def _up_conv_valid(x, w, fir):
  """Up-sampling conv (transposed conv + FIR, as ops.conv2d_up) on a crop, VALID.

  Transposed conv and blur fold into one 3x3 conv with 4 * Cout outputs (one per
  output phase) followed by a pixel shuffle: on small crops one plain conv is much
  faster than four phase convs plus a blur, for the same multiply-adds.
  (N, n, n, Cin) low-res [a, a+n) -> (N, 2n-4, 2n-4, Cout) high-res [2a+2, 2a+2n-2).
  """
  a = jnp.asarray(_phase_taps(tuple(fir)), w.dtype)
  cin, cout = w.shape[2], w.shape[3]
  k = jnp.einsum("adk,bel,klio->deiabo", a, a, w, precision=HIGHEST).reshape(3, 3, cin, 4 * cout)
  y = _conv_valid(x, k)
  n, h, wd, _ = y.shape
  y = y.reshape(n, h, wd, 2, 2, cout).transpose(0, 1, 3, 2, 4, 5)
  return y.reshape(n, 2 * h, 2 * wd, cout)


def _pre(cfg, L, p, x, s, valid=False):
  """Modulated conv output before noise/bias, (N, R', R', Cout).

  valid=True is for crops: a 3x3 conv drops 1 px per side; an up conv on low-res
  input [a, a+n) is exact on high-res [2a+2, 2a+2n-2) (each output reads inputs
  floor(o/2)-1 .. floor(o/2)+1), so 2 px per side are dropped.
  """
  if L.kind == "conv":
    w = p["weight"]
    h = x * s[:, None, None, :]
    if L.up:
      h = _up_conv_valid(h, w, cfg.fir) if valid else ops.conv2d_up(h, w, cfg.fir, HIGHEST)
    else:
      h = _conv_valid(h, w) if valid else ops.conv2d(h, w, HIGHEST)
    d = ops.demod_coefficients(w, s, _demod_eps(cfg, w), HIGHEST)
    return h * d[:, None, None, :]
  h = x * (s * (1.0 / math.sqrt(L.channels)))[:, None, None, :]
  return _conv_valid(h, p["weight"])  # 1x1: VALID == SAME


def _block_gain(cfg, L):
  if cfg.architecture == "resnet" and L.name.endswith("conv1") and L.resolution > 4:
    return math.sqrt(0.5)
  return 1.0


def _post(cfg, L, p, syn, state, pre, noise, crop=None):
  """Noise, bias, activation, resnet shortcut / toRGB accumulation -> new state.

  noise: (R', R') const noise of this conv layer (the crop's part in crop mode).
  crop: None (full image) or a _Crop giving how to cut the up-sampled shortcut /
    previous image to this layer's output region, and the in-image mask.
  """
  x, img, bx = state
  clamp = cfg.conv_clamp
  if L.kind == "conv":
    gain = _block_gain(cfg, L)
    h = pre + noise[None, :, :, None] * p["noise_strength"]
    h = ops.bias_act(h, p["bias"], "lrelu", gain, None if clamp is None else clamp * gain)
    if gain != 1.0:
      skip = syn["skips"][L.resolution.bit_length() - 4]
      y = ops.upsample2d(_conv_valid(bx, skip["weight"] / math.sqrt(bx.shape[-1])), cfg.fir)  # 1x1
      if crop is not None:
        y = crop.cut_skip(y)
      h = y * math.sqrt(0.5) + h
    if crop is not None:
      h = h * crop.mask
    return (h, img, bx)
  y = ops.bias_act(pre, p["bias"], "linear", 1.0, clamp)
  if img is not None:
    up = ops.upsample2d(img, cfg.fir)
    y = (crop.cut_skip(up) if crop is not None else up) + y
  if crop is not None:
    y = y * crop.mask
  return (x, y, bx)


def _noise(g, layout, m):
  if layout[m].kind != "conv":
    return None
  return g.buffers["noise"][sum(1 for L in layout[:m] if L.kind == "conv")]


def _layer(g, m, state, s_m):
  """Layer m of the synthesis network on full-size state."""
  L = g.layout[m]
  p = g.params["synthesis"]["layers"][m]
  if L.kind == "conv" and L.up:
    state = (state[0], state[1], state[0])  # resnet shortcut input
  return _post(g.config, L, p, g.params["synthesis"], state, _pre(g.config, L, p, state[0], s_m),
               _noise(g, g.layout, m))


def _initial_state(g, n, dtype):
  c = g.params["synthesis"]["const"].astype(dtype)
  return (jnp.broadcast_to(c[None], (n,) + c.shape), None, None)


def _render(g, s, start=0, stop=None, state=None):
  """Run layers [start, stop) from state (default: the const input); returns the state."""
  stop = len(g.layout) if stop is None else stop
  if state is None:
    state = _initial_state(g, s[0].shape[0], s[0].dtype)
  for m in range(start, stop):
    state = _layer(g, m, state, s[m])
  return state


def _pool(img, res):
  """(N, H, W, C) -> (N, C, P, P): non-overlapping box mean, P = min(res, H)."""
  n, h, w, c = img.shape
  if h > res:
    f = h // res
    img = img.reshape(n, res, f, res, f, c).mean(axis=(2, 4))
  return img.transpose(0, 3, 1, 2)


def considered_layers(layout, include_torgb=False):
  """Indices of the style layers that get maps (conv layers, plus toRGB if asked)."""
  return tuple(m for m, L in enumerate(layout) if include_torgb or L.kind == "conv")


# ----------------------------------------------------------------------------- forward mode


def _entry_tangents(g, m, x, s, pre, c0, k):
  """d pre_m / d s_m[c] for channels c0..c0+k-1 in closed form: (k, R, R, Cout).

  x: (1, Rin, Rin, Cin) layer input; s: (1, Cin); pre: (1, R, R, Cout). Channels
  beyond Cin (the last chunk's padding) give zero tangents.
  """
  cfg, L = g.config, g.layout[m]
  p = g.params["synthesis"]["layers"][m]
  cin = L.channels
  padc = (-cin) % k

  def chunk(a, axis):  # channels c0..c0+k-1 along axis, zero padded past cin
    if padc:
      a = jnp.pad(a, [(0, padc if i == axis else 0) for i in range(a.ndim)])
    return jax.lax.dynamic_slice_in_dim(a, c0, k, axis=axis)

  xc = chunk(x[0], 2)                                               # (Rin, Rin, k)
  w = p["weight"]
  if L.kind == "torgb":
    wc = chunk(w[0, 0], 0) * (1.0 / math.sqrt(cin))                 # (k, img_c)
    return jnp.einsum("yxc,co->cyxo", xc, wc, precision=HIGHEST)
  # Modulated conv u * d with u = conv(x * s, w): d/ds_c = conv(x_c, w_c) d + u dd/ds_c,
  # dd/ds_c = -d^3 s_c sum_hw w[:, :, c]^2, and u d = pre.
  # conv(x_c, w_c) = sum over taps t of conv(x_c, e_t) w[t, c]: the 9 unit-tap responses of
  # each channel come from one dense conv with an identity kernel (works for any linear
  # up-sampling conv implementation), then a K=9 contraction.
  basis = jnp.eye(9, dtype=xc.dtype).reshape(3, 3, 1, 9)
  xb = jnp.moveaxis(xc, 2, 0)[..., None]                            # (k, Rin, Rin, 1)
  taps = ops.conv2d_up(xb, basis, cfg.fir, HIGHEST) if L.up else ops.conv2d(xb, basis, HIGHEST)
  t1 = jnp.einsum("cyxt,tco->cyxo", taps, chunk(w, 2).reshape(9, k, -1), precision=HIGHEST)
  d = ops.demod_coefficients(w, s, _demod_eps(cfg, w), HIGHEST)[0]  # (Cout,)
  wsq = chunk(jnp.sum(jnp.square(w), axis=(0, 1)), 0)               # (k, Cout)
  sc = chunk(s[0], 0)                                               # (k,)
  t2 = pre[0][None] * (-(d * d)[None] * sc[:, None] * wsq)[:, None, None, :]
  return t1 * d + t2


def _balanced(total, chunk):
  """Chunk size <= chunk that splits total into equal chunks with the least padding."""
  k = min(chunk or total, total)
  n = -(-total // k)
  return -(-total // n)


def _chunked(fn, total, k):
  """Concatenate fn(c0) (leading dim k) over c0 = 0, k, 2k, ... and drop padding."""
  n = -(-total // k)
  if n == 1:
    out = fn(0)
  else:
    out = jax.lax.map(fn, jnp.arange(n) * k)
    out = out.reshape((n * k,) + out.shape[2:])
  return out[:total]


def _states(g, s, stop=None):
  """Primal states before each layer 0..stop (list of stop + 1)."""
  stop = len(g.layout) if stop is None else stop
  states = [_initial_state(g, 1, s[0].dtype)]
  for m in range(stop):
    states.append(_layer(g, m, states[-1], s[m]))
  return states


def _forward_columns(g, s, layers, chunk, states, stop, readout, consume=None):
  """Forward-mode columns for `layers`, each entering at its own layer.

  For layer m the network from m's modulated-conv output up to layer `stop` is
  linearized once and its linear map vmapped over chunks of k channel tangents.
  readout(state at stop) -> output pytree; consume(tangent outputs with leading
  dim k) -> array (k, ...) (default: identity). Returns the consumed columns
  concatenated over `layers`, (sum C_m, ...).
  """
  consume = consume or (lambda t: t)
  cols = []
  for m in layers:
    L = g.layout[m]
    p = g.params["synthesis"]["layers"][m]
    st = states[m]
    if L.kind == "conv" and L.up:
      st = (st[0], st[1], st[0])
    pre = _pre(g.config, L, p, st[0], s[m])

    def rest(pre_, m=m, st=st, L=L, p=p):
      state = _post(g.config, L, p, g.params["synthesis"], st, pre_, _noise(g, g.layout, m))
      return readout(_render(g, s, m + 1, stop, state=state))

    _, lin = jax.linearize(rest, pre)
    k = _balanced(L.channels, chunk)
    body = lambda c0, m=m, st=st, pre=pre, lin=lin, k=k: consume(jax.vmap(lin)(
        _entry_tangents(g, m, st[0], s[m], pre, c0, k)[:, None]))
    cols.append(_chunked(body, L.channels, k))
  return jnp.concatenate(cols, axis=0)


def _jac_forward(g, s, res, layers, chunk):
  """Per image (s: tuple of (1, C_l)) -> (C_considered, img_c, P, P)."""
  readout = lambda state: _pool(state[1], res)[0]
  return _forward_columns(g, s, layers, chunk, _states(g, s), len(g.layout), readout)


# ----------------------------------------------------------------------------- reverse mode


def _jac_reverse(g, s, res, layers, chunk):
  """Per image (s: tuple of (1, C_l)) -> (C_considered, img_c, P, P)."""

  def f(sc):
    s2 = list(s)
    for m, v in zip(layers, sc):
      s2[m] = v
    return _pool(_render(g, s2)[1], res)[0]

  y, pull = jax.vjp(f, tuple(s[m] for m in layers))
  n_out = y.size
  k = _balanced(n_out, chunk)

  def body(i0):
    ct = jax.nn.one_hot(i0 + jnp.arange(k), n_out, dtype=y.dtype).reshape((k,) + y.shape)
    grads = jax.vmap(pull)(ct)[0]
    return jnp.concatenate([v[:, 0] for v in grads], axis=1)       # (k, C_considered)

  jt = _chunked(body, n_out, k)                                      # (n_out, C)
  return jt.T.reshape((-1,) + y.shape)


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
  a: np.ndarray                         # (T,) output region start (x for conv, img for toRGB)
  n: int                                # output region size
  off: np.ndarray                       # start of the output inside the valid conv result
  skip_off: Optional[np.ndarray] = None  # same for the up-sampled shortcut / previous image


@dataclasses.dataclass(frozen=True)
class _CropPlan:
  cut: int            # layers >= cut run on crops
  tile: int           # pooled pixels per tile side
  num_tiles: int      # tiles per side
  x_cut: tuple        # region of the cut state's x
  img_cut: Optional[tuple]
  steps: tuple


def _has_prev_img(layout, m):
  return any(K.kind == "torgb" for K in layout[:m])


@functools.lru_cache(maxsize=64)
def _crop_plan(cfg, cut, tile, p_res):
  """Regions each layer >= cut must produce so every tile's pooled pixels are exact."""
  from ss_jax.config import style_layout
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
    skip = None
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
    steps.append(_Step(m, a, n, off, skip))
  return _CropPlan(cut, tile, nt, need_x, need_img, tuple(steps))


def _margin(region, size):
  a, n = region
  return int(max(0, -a.min(), (a + n).max() - size))


def _dslice(x, ty, tx, tab, n):
  """x[:, tab[ty]:+n, tab[tx]:+n] for (1, H, W, C) x and a (T,) int table."""
  if np.all(tab == tab[0]):  # static slice: its transpose is a pad, not a scatter
    a = int(tab[0])
    return x[:, a:a + n, a:a + n]
  tab = jnp.asarray(tab, jnp.int32)
  zero = jnp.zeros((), jnp.int32)
  return jax.lax.dynamic_slice(x, (zero, tab[ty].astype(jnp.int32), tab[tx].astype(jnp.int32), zero),
                               (1, n, n, x.shape[3]))


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


def _crop_forward(g, plan, ty, tx, x0, img0, s, noises):
  """Layers >= plan.cut on one tile's crops -> pooled tile (img_c, tile, tile)."""
  cfg = g.config
  syn = g.params["synthesis"]
  state = (x0, img0, None)
  for st in plan.steps:
    L, p = g.layout[st.m], syn["layers"][st.m]
    x, img, bx = state
    if L.kind == "conv" and L.up:
      bx = x
    pre = _dslice(_pre(cfg, L, p, x, s[st.m], valid=True), ty, tx, st.off, st.n)
    noise = None
    if L.kind == "conv":
      noise_pad, margin = noises[st.m]
      noise = _dslice(noise_pad[None, :, :, None], ty, tx, st.a + margin, st.n)[0, :, :, 0]
    state = _post(cfg, L, p, syn, (x, img, bx), pre, noise, _Crop(ty, tx, st, L.resolution))
  return _pool(state[1], plan.tile)[0]


def _tile_vjps(g, s, plan, state, above, want_cut_grads, batch):
  """Reverse mode on every tile's crops.

  Returns (gx, gimg, ja): d pooled tile / d (cut-state crops) as (T, T, M, n, n, C)
  and (T, T, M, n_i, n_i, img_c) (None unless want_cut_grads / no image at the cut)
  and d pooled tile / d s for the considered layers above the cut, (T, T, M, C_above);
  M = img_c * tile * tile cotangents per tile.
  """
  nt = plan.num_tiles
  x_cut, img_cut = state[0], state[1]
  mx = _margin(plan.x_cut, x_cut.shape[1])
  xpad = jnp.pad(x_cut, ((0, 0), (mx, mx), (mx, mx), (0, 0)))
  if img_cut is not None:
    mi = _margin(plan.img_cut, img_cut.shape[1])
    ipad = jnp.pad(img_cut, ((0, 0), (mi, mi), (mi, mi), (0, 0)))
  noises = {}
  for st in plan.steps:
    if g.layout[st.m].kind == "conv":
      nz = _noise(g, g.layout, st.m).astype(x_cut.dtype)
      mg = _margin((st.a, st.n), nz.shape[0])
      noises[st.m] = (jnp.pad(nz, mg), mg)

  def tile_fn(tid):
    ty, tx = tid // nt, tid % nt
    x0 = _dslice(xpad, ty, tx, plan.x_cut[0] + mx, plan.x_cut[1])
    i0 = None if img_cut is None else _dslice(ipad, ty, tx, plan.img_cut[0] + mi, plan.img_cut[1])

    def f(x0, i0, sa):
      s2 = list(s)
      for m, v in zip(above, sa):
        s2[m] = v
      return _crop_forward(g, plan, ty, tx, x0, i0, s2, noises)

    sa = tuple(s[m] for m in above)
    if want_cut_grads:
      y, pull = jax.vjp(f, x0, i0, sa)
    else:
      y, pull = jax.vjp(lambda sa: f(x0, i0, sa), sa)
    cts = jnp.eye(y.size, dtype=y.dtype).reshape((y.size,) + y.shape)
    grads = jax.vmap(pull)(cts)
    gs = grads[-1]
    ja = jnp.concatenate([v[:, 0] for v in gs], axis=1) if gs else jnp.zeros((y.size, 0), y.dtype)
    if not want_cut_grads:
      return None, None, ja
    return grads[0][:, 0], (None if grads[1] is None else grads[1][:, 0]), ja

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
  picked = y[b(ij, 1), b(ij, 0), b(iq, 1), b(iq, 0)]                       # (T, T, n, n, M, k)
  w = (b(iv, 1) * b(iv, 0)).astype(picked.dtype)[..., None, None]
  return jnp.sum(picked * w, axis=(2, 3))


def _tiles_to_image(v, img_c, tile):
  """(T, T, M, K) with M = (img_c, tile, tile) -> (K, img_c, T*tile, T*tile)."""
  nt = v.shape[0]
  v = v.reshape(nt, nt, img_c, tile, tile, v.shape[-1])
  return v.transpose(5, 2, 0, 3, 1, 4).reshape(v.shape[-1], img_c, nt * tile, nt * tile)


def _jac_local(g, s, res, layers, chunk, cut, tile, tile_batch):
  """Per image (s: tuple of (1, C_l)) -> (C_considered, img_c, P, P)."""
  cfg = g.config
  p_res = min(res, cfg.img_resolution)
  plan = _crop_plan(cfg, cut, tile, p_res)
  below = tuple(m for m in layers if m < cut)
  above = tuple(m for m in layers if m >= cut)
  states = _states(g, s, cut)
  gx, gi, ja = _tile_vjps(g, s, plan, states[cut], above, bool(below), tile_batch)
  parts = []
  if below:
    size = states[cut][0].shape[1]
    tab_x = _contraction_tables(plan.x_cut, size)
    rows_x = _rows(gx, tab_x)
    if gi is not None:
      tab_i = _contraction_tables(plan.img_cut, size)
      rows_i = _rows(gi, tab_i)

    def consume(t):
      tx, ti = t
      j = _contract(rows_x, tab_x, tx)
      if gi is not None:
        j = j + _contract(rows_i, tab_i, ti)
      return _tiles_to_image(j, cfg.img_channels, tile)

    readout = lambda st: (st[0][0], None if st[1] is None else st[1][0])
    parts.append(_forward_columns(g, s, below, chunk, states, cut, readout, consume))
  if above:
    parts.append(_tiles_to_image(ja, cfg.img_channels, tile))
  return jnp.concatenate(parts, axis=0)


# ----------------------------------------------------------------------------- driver


def _per_image(g, s, *, res, layers, pl, maps):
  s = tuple(v[None] for v in s)
  if pl.method == "forward":
    j = _jac_forward(g, s, res, layers, pl.chunk)
  elif pl.method == "reverse":
    j = _jac_reverse(g, s, res, layers, pl.chunk)
  else:
    j = _jac_local(g, s, res, layers, pl.chunk, pl.cut, pl.tile, pl.tile_batch)
  return jnp.mean(jnp.abs(j), axis=1) if maps else j


@functools.partial(jax.jit, static_argnames=("res", "layers", "pl", "maps", "mesh", "n"))
def _batched(g, s, *, res, layers, pl, maps, mesh, n):
  fn = functools.partial(_per_image, res=res, layers=layers, pl=pl, maps=maps)
  local = lambda g, s: jax.lax.map(lambda si: fn(g, si), s)
  out = jax.shard_map(local, mesh=mesh, in_specs=(P(), P("data")), out_specs=P("data"),
                      check_vma=False)(g, s)
  return jax.sharding.reshard(out, NamedSharding(mesh, P()))[:n]  # gather, drop the padding


def _as_styles(g, styles):
  if not isinstance(styles, (tuple, list)):
    styles = jnp.asarray(styles)
    if styles.ndim != 2 or styles.shape[1] != g.num_style_channels:
      raise ValueError(f"flat styles must have shape (N, {g.num_style_channels}), got {styles.shape}")
    styles = tuple(styles[:, L.offset:L.offset + L.channels] for L in g.layout)
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
  if mesh is None:
    mesh = jax.make_mesh((jax.device_count(),), ("data",))
  n = styles[0].shape[0]
  pad = (-n) % mesh.devices.size
  if pad:  # repeat the last image so padded rows stay finite; dropped in _batched
    styles = tuple(jnp.concatenate([v, jnp.repeat(v[-1:], pad, axis=0)]) for v in styles)
  styles = jax.device_put(styles, NamedSharding(mesh, P("data")))
  g = jax.device_put(g, NamedSharding(mesh, P()))
  return _batched(g, styles, res=res, layers=layers, pl=pl, maps=maps, mesh=mesh, n=n)


def jacobian(g: Generator, styles, resolution=32, include_torgb=False, chunk_size=None, method="auto",
             mesh=None):
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
    mesh: 1-D jax Mesh with axis "data" to shard images over; default: all devices.
  Returns:
    (N, C, img_channels, P, P) in the styles' float dtype; C = considered channels
    in flat-S order (toRGB layers left out unless include_torgb), NCHW pixels.
  """
  return _run(g, styles, resolution, include_torgb, chunk_size, method, mesh, maps=False)


def gradient_maps(g: Generator, styles, resolution=32, include_torgb=False, chunk_size=None, method="auto",
                  mesh=None):
  """StyleSpace gradient maps: |jacobian(...)| averaged over colour channels.

  Returns (N, C, P, P) in the styles' float dtype (float32 normally), P =
  min(resolution, image size), channels in flat-S order (conv layers only unless
  include_torgb). Arguments as for `jacobian`; the reduction happens per image
  inside the jitted computation, so the signed Jacobian is never stored whole.
  """
  return _run(g, styles, resolution, include_torgb, chunk_size, method, mesh, maps=True)


# ----------------------------------------------------------------------------- planning


@dataclasses.dataclass(frozen=True)
class Plan:
  """How to compute J (hashable: it is a static argument of the jitted driver).

  method: "forward" | "reverse" | "local"; chunk: tangents (forward, and the
  local mode's low layers) or cotangents (reverse) per vmapped batch; cut: first
  layer index run on crops (local); tile: pooled pixels per tile side (local);
  tile_batch: tiles per vmapped batch (local); macs: the model's estimate of
  multiply-adds per image, for information.
  """
  method: str
  chunk: Optional[int] = None
  cut: int = 0
  tile: int = 1
  tile_batch: int = 1
  macs: float = 0.0


def _conv_macs(L, n=None, n_in=None):
  """Multiply-adds of layer L on the full map, or producing an n^2 crop (from an n_in^2 input)."""
  r = L.resolution if n is None else n
  if L.kind == "torgb":
    return r * r * L.channels * L.out_channels
  if L.up:  # transposed conv: 9 taps per low-res input pixel
    r_in = L.resolution // 2 if n_in is None else n_in
    return r_in * r_in * 9 * L.channels * L.out_channels
  return r * r * 9 * L.channels * L.out_channels


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
  b = int(max(1, min(pl.num_tiles ** 2, budget // per_tile)))
  while (pl.num_tiles ** 2) % b:  # no remainder batch (it would be compiled separately)
    b -= 1
  return b


def _default_chunk(layout, stop, budget=1 << 30):
  """Tangents / cotangents per vmapped batch so that ~4 activation-sized buffers each fit `budget` bytes."""
  act = max(max(L.resolution ** 2 * L.out_channels, (L.resolution // (2 if L.up else 1)) ** 2 * L.channels)
            for L in layout[:max(stop, 1)])
  return int(max(1, budget // (4 * 4 * act)))


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
  above = pl.num_tiles ** 2 * (1 + m_ct) * crop
  below = [m for m in layers if m < cut]
  fwd = sum(layout[m].channels * sum(_conv_macs(layout[l]) for l in range(m + 1, cut)) for m in below)
  c_below = sum(layout[m].channels for m in below)
  contr = 0.0
  if below:
    size = layout[cut - 1].resolution
    (pt, _, _), _ = _contraction_tables(pl.x_cut, size)
    contr = (size * pt.shape[1]) ** 2 * m_ct * layout[cut].channels * c_below
  return above + fwd + contr


def plan(cfg, resolution=32, include_torgb=False, method="auto", chunk_size=None, cut_resolution=None,
         tile=None, tile_batch=None):
  """Choose how to compute the Jacobian; `jacobian`/`gradient_maps` accept the result as method.

  method "auto" takes the cheapest of forward / reverse / local by a multiply-add
  model. For "local", cut_resolution (layers at resolutions above it run on crops,
  0: all layers) and tile (pooled pixels per tile side) default to the model's
  best; tile_batch (tiles per vmapped batch) defaults to a memory budget.
  """
  from ss_jax.config import style_layout
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
      raise ValueError(f"cut_resolution must be 0 or a block resolution below {cfg.img_resolution}, "
                       f"got {cut_resolution}")
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
  chunk = int(chunk_size or _default_chunk(layout, cut))
  if tile_batch is None:  # ~128 MiB of crop activations per vmapped batch (measured: smaller batches of
    tile_batch = _tile_batch(cfg, layout, cut, t, p_res, 128 << 20)  # big crops underuse the matmuls)
  return Plan("local", chunk, cut, t, int(tile_batch), cost)
