"""The dense forward/reverse Jacobian modes of the gradient maps (see api.py's docstring).

They start JAX transforms at any layer of the synthesis network through its per-layer steps
(ss_jax/stylegan2/layers.py)."""

import math

import jax
import jax.numpy as jnp

from ss_jax.stylegan2 import ops
from ss_jax.stylegan2.layers import _demod_eps, _pre, _post, _noise, _layer, _initial_state, _render
from ss_jax.stylegan2.ops import HIGHEST


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

  xc = chunk(x[0], 2)  # (Rin, Rin, k)
  w = p["weight"]
  if L.kind == "torgb":
    wc = chunk(w[0, 0], 0) * (1.0 / math.sqrt(cin))  # (k, img_c)
    return jnp.einsum("yxc,co->cyxo", xc, wc, precision=HIGHEST)
  # Modulated conv u * d with u = conv(x * s, w): d/ds_c = conv(x_c, w_c) d + u dd/ds_c,
  # dd/ds_c = -d^3 s_c sum_hw w[:, :, c]^2, and u d = pre.
  # conv(x_c, w_c) = sum over taps t of conv(x_c, e_t) w[t, c]: the 9 unit-tap responses of
  # each channel come from one dense conv with an identity kernel (works for any linear
  # up-sampling conv implementation), then a K=9 contraction.
  basis = jnp.eye(9, dtype=xc.dtype).reshape(3, 3, 1, 9)
  xb = jnp.moveaxis(xc, 2, 0)[..., None]  # (k, Rin, Rin, 1)
  taps = ops.conv2d_up(xb, basis, cfg.fir, HIGHEST) if L.up else ops.conv2d(xb, basis, HIGHEST)
  t1 = jnp.einsum("cyxt,tco->cyxo", taps, chunk(w, 2).reshape(9, k, -1), precision=HIGHEST)
  d = ops.demod_coefficients(w, s, _demod_eps(cfg, w), HIGHEST)[0]  # (Cout,)
  wsq = chunk(jnp.sum(jnp.square(w), axis=(0, 1)), 0)  # (k, Cout)
  sc = chunk(s[0], 0)  # (k,)
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
    body = lambda c0, m=m, st=st, pre=pre, lin=lin, k=k: consume(
      jax.vmap(lin)(_entry_tangents(g, m, st[0], s[m], pre, c0, k)[:, None])
    )
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
    return jnp.concatenate([v[:, 0] for v in grads], axis=1)  # (k, C_considered)

  jt = _chunked(body, n_out, k)  # (n_out, C)
  return jt.T.reshape((-1,) + y.shape)
