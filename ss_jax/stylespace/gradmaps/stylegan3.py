"""Exact StyleSpace Jacobians of a StyleGAN3 generator (the `ss_jax.stylespace.gradmaps.api` modes for StyleGAN3).

J = d pooled image / d s_c for the considered style channels (conv layers L0 ...
L{n-1}, plus toRGB with include_torgb; the input layer's 4 values are never
differentiated), per image:

* "forward": layers before l run primal-only once; the rest of the network, as a
  function of layer l's style, is `jax.linearize`d and its linear map `vmap`ped
  over chunks of one-hot tangents (one column per channel).
* "reverse": one `jax.vjp` of the pooled image w.r.t. all considered styles and
  `vmap` of the pullback over chunks of one-hot cotangents.

The StyleGAN2 "local" (crop) mode is not offered: its window logic assumes 3x3
convs on a 2x pyramid without margins, whereas a StyleGAN3 pixel depends on wide
windows (12-24 tap filters at 2-4x the sampling rate, margins of 10 px, all
layers at the full 36-276 px maps), so crops would cover most of the map anyway.
"""

import jax
import jax.numpy as jnp

from ss_jax.stylespace.gradmaps.dense import _balanced, _chunked, _pool
from ss_jax.stylegan3 import generator as sg3
from ss_jax.stylegan3.config import layer_table, style_layout

METHODS = ("auto", "forward", "reverse")
# Full-size (max_activation) float32 temporaries per tangent (forward) / cotangent (reverse) in a
# chunk, with headroom: XLA's memory_analysis of s1's all-layer Jacobian gives about 2 (forward,
# chunk 16: 79 MiB) and 12.8 (reverse, 8 / 32 rows: 251 / 956 MiB; the transposed polyphase FIRs
# keep several cotangent maps per layer alive).
LIVE_MAPS = {"forward": 4, "reverse": 16}


def _render_from(g, s, start, x):
  """Layers start.. (0 = L0) of layout order from activation x; returns the image (1, R, R, C)."""
  cfg = g.config
  for idx in range(start, cfg.num_layers + 1):
    x = sg3.layer(cfg, g.params, g.buffers, idx, x, s[idx + 1])
  return x * cfg.output_scale if cfg.output_scale != 1 else x


def jac_forward(g, s, res, layers, chunk):
  """Per image (s: tuple of (1, C_l)) -> (C_considered, img_c, P, P); layers: layout indices."""
  cfg = g.config
  x = sg3.input_layer(cfg, g.params, g.buffers, s[0])
  acts = [x]  # acts[i] = input of SynthesisLayer i
  for idx in range(max(layers)):
    acts.append(sg3.layer(cfg, g.params, g.buffers, idx, acts[-1], s[idx + 1]))
  cols = []
  for m in layers:
    idx = m - 1

    def f(sm, idx=idx):
      y = sg3.layer(cfg, g.params, g.buffers, idx, acts[idx], sm)
      return _pool(_render_from(g, s, idx + 1, y), res)[0]

    _, lin = jax.linearize(f, s[m])
    cm = s[m].shape[1]
    k = _balanced(cm, chunk)
    eye = jnp.eye(cm, dtype=s[m].dtype)

    def body(c0, lin=lin, k=k, eye=eye, cm=cm):
      t = jax.lax.dynamic_slice_in_dim(jnp.pad(eye, ((0, k), (0, 0))), c0, k, 0)
      return jax.vmap(lin)(t[:, None])

    cols.append(_chunked(body, cm, k))
  return jnp.concatenate(cols, axis=0)


def jac_reverse(g, s, res, layers, chunk, rows=None):
  """Per image (s: tuple of (1, C_l)) -> (C_considered, img_c, P, P).

  rows: optional flat indices into the pooled output (img_c * P * P, NCHW order): only those
  rows of J, returned as (C_considered, len(rows)) (a check of a few pixels costs that many
  backward passes instead of img_c * P * P).
  """

  def f(sc):
    s2 = list(s)
    for m, v in zip(layers, sc):
      s2[m] = v
    return _pool(sg3.synthesis(g.config, g.params, g.buffers, s2), res)[0]

  y, pull = jax.vjp(f, tuple(s[m] for m in layers))
  idx = jnp.arange(y.size) if rows is None else jnp.asarray(rows, jnp.int32)
  n = int(idx.size)
  k = _balanced(n, chunk)
  idx = jnp.pad(idx, (0, (-n) % k))

  def body(i0):
    ct = jax.nn.one_hot(jax.lax.dynamic_slice_in_dim(idx, i0, k), y.size, dtype=y.dtype).reshape((k,) + y.shape)
    grads = jax.vmap(pull)(ct)[0]
    return jnp.concatenate([v[:, 0] for v in grads], axis=1)

  jt = _chunked(body, n, k)
  return jt.T.reshape((-1,) + y.shape) if rows is None else jt.T


def per_image(g, s, res, layers, method, chunk):
  return (jac_forward if method == "forward" else jac_reverse)(g, s, res, layers, chunk)


def layer_macs(cfg):
  """Multiply-adds per image of each SynthesisLayer (conv + FIR taps), index 0 = L0."""
  _, table = layer_table(cfg)
  out = []
  for t in table:
    conv_n = t.in_size + t.conv_kernel - 1
    macs = conv_n**2 * t.conv_kernel**2 * t.in_channels * t.out_channels
    tmp = conv_n * t.up_factor + t.padding[0] + t.padding[1] - t.up_taps + 1
    fir = (conv_n * tmp + tmp * tmp) * t.up_taps / t.up_factor * t.out_channels
    fir += (
      t.out_size**2 * t.down_taps**2 if t.down_radial else (tmp * t.out_size + t.out_size**2) * t.down_taps
    ) * t.out_channels
    out.append(macs + fir)
  return out


def max_activation(cfg):
  """Floats of the largest per-image intermediate (the up-sampled map before the leaky ReLU)."""
  _, table = layer_table(cfg)
  return max(
    ((t.in_size + t.conv_kernel - 1) * t.up_factor + t.padding[0] + t.padding[1]) ** 2 * t.out_channels for t in table
  )


def plan_method(cfg, layers, resolution, method, chunk_size, budget=1 << 30):
  """(method, chunk, macs): forward vs reverse by a multiply-add model; chunk sized for ~budget bytes
  of temporaries (LIVE_MAPS full-size maps per column or row)."""
  if method not in METHODS:
    raise ValueError(
      f"method {method!r} is not available for StyleGAN3 generators (choose from {METHODS}; "
      "the crop-based 'local' mode assumes StyleGAN2's 3x3-conv pyramid without margins)"
    )
  per_layer = layer_macs(cfg)
  total = sum(per_layer)
  p = min(int(resolution), cfg.img_resolution)
  channels = {m: l for m, l in zip(range(1, cfg.num_layers + 2), [t.in_channels for t in layer_table(cfg)[1]])}
  fwd = sum(channels[m] * sum(per_layer[m - 1 :]) for m in layers)
  rev = 2.0 * cfg.img_channels * p * p * total
  if method == "auto":
    method = "forward" if fwd <= rev else "reverse"
  chunk = int(chunk_size or max(1, budget // (4 * LIVE_MAPS[method] * max_activation(cfg))))
  return method, chunk, float(fwd if method == "forward" else rev)


__all__ = ["METHODS", "jac_forward", "jac_reverse", "layer_macs", "per_image", "plan_method", "style_layout"]
