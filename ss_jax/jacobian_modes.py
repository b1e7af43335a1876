"""Per-layer synthesis steps and the dense forward/reverse Jacobian modes of `ss_jax.gradmaps`.

The synthesis loop of ss_jax.generator is split into per-layer steps so that JAX
transforms can start at any layer (see the gradmaps module docstring)."""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from ss_jax import ops
from ss_jax.generator import HIGHEST


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
  return tuple(m for m, L in enumerate(layout) if L.kind == "conv" or (include_torgb and L.kind == "torgb"))


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
