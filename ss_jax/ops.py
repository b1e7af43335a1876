"""StyleGAN2 layer primitives in NHWC: bias+activation, modulation, up-sampling.

Both official codes up-sample with a transposed 3x3 conv (stride 2) followed by a
4x4 FIR blur ([1,3,3,1] outer product, gain 4). The transposed conv is computed
as its four stride phases (dense small convs on the low-resolution input, 9 taps
per input pixel: 4x fewer multiply-adds than zero insertion or than folding the
blur into a 6x6 kernel), then the blur runs separably on the output.
"""
import jax
import jax.numpy as jnp
import numpy as np

LRELU_SLOPE = 0.2
LRELU_GAIN = float(np.sqrt(2.0))
DEFAULT_FIR = (1.0, 3.0, 3.0, 1.0)


def bias_act(x, b, act="lrelu", gain=1.0, clamp=None):
  """x + b, activation, times gain, then clamp to ±clamp (NVIDIA's bias_act order).

  x: (..., C) float32; b: (C,) or None. gain multiplies the activation's own gain
  (sqrt(2) for lrelu).
  """
  if b is not None:
    x = x + b
  if act == "lrelu":
    x = jnp.where(x >= 0, x, x * LRELU_SLOPE)
    gain = gain * LRELU_GAIN
  elif act != "linear":
    raise ValueError(f"unknown activation {act!r}")
  if gain != 1.0:
    x = x * gain
  if clamp is not None:
    x = jnp.clip(x, -clamp, clamp)
  return x


def normalize_2nd_moment(x, eps=1e-8):
  """x / sqrt(mean(x², last axis) + eps): mapping-input normalisation (both codes)."""
  return x * jax.lax.rsqrt(jnp.mean(jnp.square(x), axis=-1, keepdims=True) + eps)


def conv2d(x, w, precision=None):
  """Stride-1 'same' correlation (as torch conv2d) in NHWC/HWIO."""
  pad = w.shape[0] // 2
  return jax.lax.conv_general_dilated(
      x, w, window_strides=(1, 1), padding=((pad, pad), (pad, pad)),
      dimension_numbers=("NHWC", "HWIO", "NHWC"), precision=precision)


def conv2d_up(x, w, fir=DEFAULT_FIR, precision=None):
  """Up-sampling conv: transposed 3x3 conv, stride 2, then FIR blur. (N,H,W,Ci)->(N,2H,2W,Co).

  The transposed conv runs as its four stride phases (2x2, 2x1, 1x2 and 1x1 taps:
  9 taps per input pixel in all, no multiplications by inserted zeros), which
  are interleaved into the (2H+1)^2 result; the blur then runs separably on
  Co channels at the output resolution, which is cheap next to the conv.
  """
  n, h, wd, _ = x.shape
  cout = w.shape[3]
  even, odd = [2, 0], [1]   # taps landing on even / odd output positions, in input order p-1, p

  def phase(ty, tx):
    k = w[np.ix_(ty, tx)]
    py = (1, 1) if len(ty) == 2 else (0, 0)
    px = (1, 1) if len(tx) == 2 else (0, 0)
    y = jax.lax.conv_general_dilated(x, k, (1, 1), (py, px), dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                     precision=precision)
    return jnp.pad(y, ((0, 0), (0, h + 1 - y.shape[1]), (0, wd + 1 - y.shape[2]), (0, 0)))

  t = jnp.stack([jnp.stack([phase(even, even), phase(even, odd)], axis=3),
                 jnp.stack([phase(odd, even), phase(odd, odd)], axis=3)], axis=2)  # (N, H+1, 2, W+1, 2, Co)
  t = t.reshape(n, 2 * h + 2, 2 * wd + 2, cout)[:, :2 * h + 1, :2 * wd + 1]
  return _blur_same(t, fir)


def _blur_same(t, fir):
  """upfirdn2d(t, f, pad=(1, 1), gain=4) of a (N, 2H+1, 2W+1, C) map -> (N, 2H, 2W, C), separably."""
  g = np.asarray(fir, np.float64)
  g = (g * 2.0 / g.sum()).astype(np.float32)

  def along(v, axis):
    pad = [(0, 0)] * v.ndim
    pad[axis] = (1, 1)
    vp = jnp.pad(v, pad)
    m = v.shape[axis] - 1
    return sum(g[j] * jax.lax.slice_in_dim(vp, j, j + m, axis=axis) for j in range(len(g)))

  return along(along(t, 1), 2)


def upsample2d(x, fir=DEFAULT_FIR):
  """upfirdn2d(x, f, up=2, pad=(2, 1), gain=4): image/skip up-sampling, (N,H,W,C)->(N,2H,2W,C).

  Per axis, with g = 2 f / Σf (4 taps):
  y[2p] = g0·x[p-1] + g2·x[p],  y[2p+1] = g1·x[p] + g3·x[p+1].
  """
  g = np.asarray(fir, np.float64)
  g = (g * 2.0 / g.sum()).astype(np.float32)

  def up_axis(v, axis):
    pad = [(0, 0)] * v.ndim
    pad[axis] = (1, 1)
    vp = jnp.pad(v, pad)
    n = v.shape[axis]
    sl = lambda s: jax.lax.slice_in_dim(vp, s, s + n, axis=axis)
    even = g[0] * sl(0) + g[2] * sl(1)
    odd = g[1] * sl(1) + g[3] * sl(2)
    out = jnp.stack([even, odd], axis=axis + 1)
    shape = list(v.shape)
    shape[axis] = 2 * n
    return out.reshape(shape)

  return up_axis(up_axis(x, 1), 2)


def demod_coefficients(w, s, eps=1e-8, precision=None):
  """Demodulation factors rsqrt(Σ_{i,kh,kw} (w·s_i)² + eps) per sample and output channel.

  Args:
    w: (kh, kw, Cin, Cout) raw conv weight.
    s: (N, Cin) styles.
    eps: 1e-8 for NVIDIA; rosinality scales its weight by 1/sqrt(Cin·k²) before
      demodulating, which equals eps = 1e-8·Cin·k² on the raw weight.
  Returns:
    (N, Cout) float32.
  """
  wsq = jnp.sum(jnp.square(w), axis=(0, 1))                        # (Cin, Cout)
  energy = jnp.matmul(jnp.square(s), wsq, precision=precision)    # (N, Cout)
  return jax.lax.rsqrt(energy + eps)
