"""The synthesis network as per-layer steps: the one implementation behind `generator.synthesis`
and the gradient-map modes (ss_jax/stylespace/gradmaps/), which start JAX transforms at any layer.

State between layers is (x, img, block_x), NHWC, batched: x the activations (N, R, R, C), img the
skip-architecture image so far (N, R, R, img_c) or None, block_x the resnet shortcut input.
`_pre` is the modulated conv of a layer (before noise and bias), `_post` the rest (noise, bias,
activation, resnet shortcut, toRGB accumulation); `valid=True` / `crop` run them on crops.
"""

import functools
import math

import jax.numpy as jnp
import numpy as np

from ss_jax.stylegan2 import ops
from ss_jax.stylegan2.ops import HIGHEST


def _demod_eps(cfg, w):
  # rosinality applies the 1/sqrt(fan_in) gain before demodulating, so its eps is relatively larger.
  return 1e-8 * (w.shape[0] * w.shape[1] * w.shape[2] if cfg.flavour == "rosinality" else 1)


def _conv_valid(x, w, precision=HIGHEST):
  """VALID correlation (N, h, w, Cin) x (kh, kw, Cin, Cout) as patches @ weight.

  Used on small crops: its VJP under vmap is a plain matmul plus pads, whereas a
  vmapped transposed lax.conv on tiny maps runs >10x slower on CPU.
  """
  kh, kw, cin, cout = w.shape
  _, h, wd, _ = x.shape
  if kh * kw > 1:
    x = jnp.concatenate([x[:, i : i + h - kh + 1, j : j + wd - kw + 1] for i in range(kh) for j in range(kw)], axis=3)
  return jnp.dot(x, w.reshape(kh * kw * cin, cout), precision=precision)


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


# Crop up-convs: True (default) = ops.conv2d_up's four stride phases (9 taps per input pixel) as
# patches @ weight, plus its separable blur; False = the former single folded 3x3 conv with
# 4 * Cout outputs (36 taps per input pixel; kept for benchmarks/bench_gradmap_stream.py). The
# phases are 2.1-2.3x faster in the crop VJPs of config-f 1024 px (1.8x at 256 px).
UP_PHASES = True


# Crop up-convs (UP_PHASES): True (default) = the stride phases only where the kept outputs read them
# (per axis n - 1 even and n odd phase samples instead of n + 1 and n: 1.47x fewer multiply-adds
# at n = 7); False = ops.conv2d_up's phases on the zero-padded crop, then cut.
UP_TRIM = True


def _up_phases_valid(x, w, fir):
  """_up_conv_valid by stride phases computed only where needed: (N, n, n, Cin) -> (N, 2n-4, 2n-4, Cout).

  As ops.conv2d_up per axis: transposed-conv samples t[2q] = x[q-1] w2 + x[q] w0 (even, e) and
  t[2q+1] = x[q] w1 (odd, o), blurred (g = 2 f / sum f): y[2p] = g0 o[p-1] + g1 e[p] + g2 o[p]
  + g3 e[p+1], y[2p+1] = g0 e[p] + g1 o[p] + g2 e[p+1] + g3 o[p+1]. The kept outputs 2 .. 2n-3
  (p = 1 .. n-2) read e[1 .. n-1] (a VALID 2-tap correlation, no padding) and o[0 .. n-1].
  """
  m = x.shape[1] - 2
  g = ops.up_blur_taps(fir)
  phase = lambda ty, tx: _conv_valid(x, w[np.ix_(ty, tx)])
  # e[r] = t[2r + 2] (n - 1 along axis), o[r] = t[2r + 1] (n) -> outputs 2 + 2r, 3 + 2r
  blur = lambda e, o, axis: ops.blur_phase_pair(e, o, g, axis, m)
  return ops.interleave_blurred_phases(phase, blur)


def _up_conv_valid(x, w, fir):
  """Up-sampling conv (transposed conv + FIR, as ops.conv2d_up) on a crop, VALID.

  The crop is up-sampled as a whole image (zero outside) and the outputs that read
  only inputs inside it are kept; each output o = 2p + r reads inputs p-1 .. p+1.
  (N, n, n, Cin) low-res [a, a+n) -> (N, 2n-4, 2n-4, Cout) high-res [2a+2, 2a+2n-2).
  """
  if UP_PHASES and UP_TRIM:
    return _up_phases_valid(x, w, fir)
  if UP_PHASES:
    n = x.shape[1]
    return ops.conv2d_up(x, w, fir, HIGHEST, phase_conv=_conv_valid)[:, 2 : 2 * n - 2, 2 : 2 * n - 2]
  a = jnp.asarray(_phase_taps(tuple(fir)), w.dtype)
  cin, cout = w.shape[2], w.shape[3]
  k = jnp.einsum("adk,bel,klio->deiabo", a, a, w, precision=HIGHEST).reshape(3, 3, cin, 4 * cout)
  y = _conv_valid(x, k)
  n, h, wd, _ = y.shape
  y = y.reshape(n, h, wd, 2, 2, cout).transpose(0, 1, 3, 2, 4, 5)
  return y.reshape(n, 2 * h, 2 * wd, cout)


def _modulate(L, x, s):
  """Layer L's modulated input: x (N, R, R, Cin) times its styles s (N, Cin) (toRGB: / sqrt(Cin))."""
  scale = s if L.kind == "conv" else s * (1.0 / math.sqrt(L.channels))
  return x * scale[:, None, None, :]


def _conv_part(cfg, L, p, h, valid=False, precision=HIGHEST):
  """Layer L's convolution of its modulated input h, before demodulation, (N, R', R', Cout)."""
  w = p["weight"]
  if L.kind == "conv" and L.up:
    return _up_conv_valid(h, w, cfg.fir) if valid else ops.conv2d_up(h, w, cfg.fir, precision)
  return _conv_valid(h, w, precision) if valid else ops.conv2d(h, w, precision)  # toRGB 1x1: VALID == SAME


def _demod(cfg, L, p, s, precision=HIGHEST):
  """Demodulation factors (N, Cout) of a conv layer for styles s (N, Cin); None for toRGB."""
  if L.kind != "conv":
    return None
  return ops.demod_coefficients(p["weight"], s, _demod_eps(cfg, p["weight"]), precision)


def _pre(cfg, L, p, x, s, valid=False, precision=HIGHEST):
  """Modulated conv output before noise/bias, (N, R', R', Cout).

  valid=True is for crops: a 3x3 conv drops 1 px per side; an up conv on low-res
  input [a, a+n) is exact on high-res [2a+2, 2a+2n-2) (each output reads inputs
  floor(o/2)-1 .. floor(o/2)+1), so 2 px per side are dropped.
  """
  u = _conv_part(cfg, L, p, _modulate(L, x, s), valid, precision)
  d = _demod(cfg, L, p, s, precision)
  return u if d is None else u * d[:, None, None, :]


def _block_gain(cfg, L):
  if cfg.architecture == "resnet" and L.name.endswith("conv1") and L.resolution > 4:
    return math.sqrt(0.5)
  return 1.0


def _post(cfg, L, p, syn, state, pre, noise, crop=None, precision=HIGHEST):
  """Noise, bias, activation, resnet shortcut / toRGB accumulation -> new state.

  noise: (R', R') const noise of this conv layer (the crop's part in crop mode), or
    (N, R, R, 1) per-image noise, or None (no noise).
  crop: None (full image) or a _Crop giving how to cut the up-sampled shortcut /
    previous image to this layer's output region, and the in-image mask.
  """
  x, img, bx = state
  clamp = cfg.conv_clamp
  if L.kind == "conv":
    gain = _block_gain(cfg, L)
    h = pre
    if noise is not None:
      h = h + (noise if noise.ndim == 4 else noise[None, :, :, None]) * p["noise_strength"]
    h = ops.bias_act(h, p["bias"], "lrelu", gain, None if clamp is None else clamp * gain)
    if gain != 1.0:
      skip = syn["skips"][L.resolution.bit_length() - 4]
      wk = skip["weight"] / math.sqrt(bx.shape[-1])
      y = ops.upsample2d(
        _conv_valid(bx, wk, precision) if crop is not None else ops.conv2d(bx, wk, precision), cfg.fir
      )  # 1x1
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


def _step(cfg, L, p, syn, state, s_l, noise, precision=HIGHEST):
  """One full-size synthesis layer: state -> state. s_l (N, C_in) its styles; noise as for _post."""
  if L.kind == "conv" and L.up:
    state = (state[0], state[1], state[0])  # resnet shortcut input
  return _post(cfg, L, p, syn, state, _pre(cfg, L, p, state[0], s_l, precision=precision), noise, precision=precision)


def _layer(g, m, state, s_m):
  """Layer m of g's synthesis network on full-size state, with the checkpoint's constant noise."""
  return _step(
    g.config, g.layout[m], g.params["synthesis"]["layers"][m], g.params["synthesis"], state, s_m, _noise(g, g.layout, m)
  )


def _const_state(syn, n, dtype):
  """The synthesis input: the learned constant (N, 4, 4, C) and no image or shortcut yet."""
  c = syn["const"].astype(dtype)
  return (jnp.broadcast_to(c[None], (n,) + c.shape), None, None)


def _initial_state(g, n, dtype):
  return _const_state(g.params["synthesis"], n, dtype)


def _render(g, s, start=0, stop=None, state=None):
  """Run layers [start, stop) from state (default: the const input); returns the state."""
  stop = len(g.layout) if stop is None else stop
  if state is None:
    state = _initial_state(g, s[0].shape[0], s[0].dtype)
  for m in range(start, stop):
    state = _layer(g, m, state, s[m])
  return state
