"""StyleGAN2 layer primitives in NHWC: bias+activation, modulation, up-sampling.

Both official codes up-sample with a transposed 3x3 conv (stride 2) followed by a
4x4 FIR blur ([1,3,3,1] outer product, gain 4). The transposed conv is computed
as its four stride phases (dense small convs on the low-resolution input, 9 taps
per input pixel: 4x fewer multiply-adds than zero insertion or than folding the
blur into a 6x6 kernel); the blur runs separably on those phase maps.
"""

import jax
import jax.numpy as jnp
import numpy as np

HIGHEST = jax.lax.Precision.HIGHEST

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


# Winograd pays off on XLA:CPU only where the GEMMs are wide enough to outweigh its
# memory-bound tile transforms (measured on 2-core AMD EPYC, see benchmarks/bench_generate.py).
WINOGRAD_MIN_CHANNELS = 256
WINOGRAD_MIN_SIDE = 32


def use_winograd(x_shape, w_shape):
  """Whether conv2d takes the Winograd path: XLA:CPU, 3x3, wide channels, large even sides.

  Accelerator backends keep lax.conv (cuDNN / the TPU compiler choose their own algorithms).
  """
  kh, kw, ci, co = w_shape
  return (
    jax.default_backend() == "cpu"
    and kh == kw == 3
    and min(ci, co) >= WINOGRAD_MIN_CHANNELS
    and x_shape[1] % 2 == 0
    and x_shape[2] % 2 == 0
    and min(x_shape[1], x_shape[2]) >= WINOGRAD_MIN_SIDE
  )


def conv2d(x, w, precision=None):
  """Stride-1 'same' correlation (as torch conv2d) in NHWC/HWIO: (N,H,W,Ci), (k,k,Ci,Co) -> (N,H,W,Co)."""
  if use_winograd(x.shape, w.shape):
    return conv3x3_winograd(x, w, precision)
  pad = w.shape[0] // 2
  return jax.lax.conv_general_dilated(
    x,
    w,
    window_strides=(1, 1),
    padding=((pad, pad), (pad, pad)),
    dimension_numbers=("NHWC", "HWIO", "NHWC"),
    precision=precision,
  )


def conv3x3_winograd(x, w, precision=None):
  """3x3 'same' correlation by Winograd F(2x2, 3x3): (N,H,W,Ci), (3,3,Ci,Co) -> (N,H,W,Co); H, W even.

  Each 2x2 output tile comes from a 4x4 input tile: 16 multiplies per tile and
  channel pair instead of 36, as 16 batched GEMMs over all tiles. The transforms
  only add, subtract and halve, so float32 results stay within ~1e-6 relative of
  the direct conv (a different summation order, as any conv algorithm).
  """
  n, h, wd, _ = x.shape
  co = w.shape[3]
  xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))

  def tiles(v, axis):
    """Input rows 2t + a (a = 0..3) of every tile t along axis, each with length/2 entries."""
    m = v.shape[axis] - 2
    lo = jax.lax.slice_in_dim(v, 0, m, axis=axis)
    hi = jax.lax.slice_in_dim(v, 2, m + 2, axis=axis)
    shape = list(lo.shape)
    shape[axis : axis + 1] = [m // 2, 2]
    lo, hi = lo.reshape(shape), hi.reshape(shape)
    take = lambda a, k: jax.lax.index_in_dim(a, k, axis=axis + 1, keepdims=False)
    return take(lo, 0), take(lo, 1), take(hi, 0), take(hi, 1)

  def input_transform(d0, d1, d2, d3):  # B^T d
    return d0 - d2, d1 + d2, d2 - d1, d1 - d3

  rows = input_transform(*tiles(xp, 1))
  v = jnp.stack([jnp.stack(input_transform(*tiles(r, 2)), 0) for r in rows], 0)  # (4, 4, N, H/2, W/2, Ci)
  u = winograd_filter(w)
  m = jnp.einsum("abntuc,abco->abntuo", v, u, precision=precision)

  def output_transform(m0, m1, m2, m3):  # A^T m
    return m0 + m1 + m2, m1 - m2 - m3

  y_rows = output_transform(m[0], m[1], m[2], m[3])  # each (4, N, H/2, W/2, Co)
  y = [output_transform(r[0], r[1], r[2], r[3]) for r in y_rows]  # y[row phase][col phase]
  y = jnp.stack([jnp.stack(y[0], axis=3), jnp.stack(y[1], axis=3)], axis=2)  # (N, H/2, 2, W/2, 2, Co)
  return y.reshape(n, h, wd, co)


def winograd_filter(w):
  """G g G^T of a (3, 3, Ci, Co) filter -> (4, 4, Ci, Co): per axis the rows g0, (g0 + g1 + g2) / 2,
  (g0 - g1 + g2) / 2, g2. Written as adds: the same product as an einsum with G took 26 ms per
  512 x 512 filter on XLA:CPU (a generic dot over the 3 x 3 taps), these ~2 ms (timed by hand)."""

  def axis_transform(v, axis):
    g0, g1, g2 = (jax.lax.index_in_dim(v, k, axis, keepdims=False) for k in range(3))
    return jnp.stack([g0, 0.5 * (g0 + g1 + g2), 0.5 * (g0 - g1 + g2), g2], axis)

  return axis_transform(axis_transform(w, 0), 1)


def conv2d_up(x, w, fir=DEFAULT_FIR, precision=None, phase_conv=None):
  """Up-sampling conv: transposed 3x3 conv, stride 2, then FIR blur. (N,H,W,Ci)->(N,2H,2W,Co).

  The transposed conv runs as its four stride phases (2x2, 2x1, 1x2 and 1x1 taps:
  9 taps per input pixel in all, no multiplications by inserted zeros). The blur
  (pad 1, gain 4) is applied separably to those low-resolution phase maps, giving
  the four output phases directly, which are interleaved once at the end.
  phase_conv: optional (x zero-padded, kernel (kh, kw, Ci, Co)) -> VALID correlation
  for the phases (default lax.conv; the gradient maps use patches @ weight on crops).
  """
  g = up_blur_taps(fir)

  def phase(ty, tx):
    py = (1, 1) if len(ty) == 2 else (0, 0)
    px = (1, 1) if len(tx) == 2 else (0, 0)
    if phase_conv is not None:
      return phase_conv(jnp.pad(x, ((0, 0), py, px, (0, 0))), w[np.ix_(ty, tx)])
    return jax.lax.conv_general_dilated(
      x, w[np.ix_(ty, tx)], (1, 1), (py, px), dimension_numbers=("NHWC", "HWIO", "NHWC"), precision=precision
    )

  def blur(e, o, axis):
    """Transposed-conv samples t[2p] = e[p] (p <= L), t[2p+1] = o[p] (p < L) -> blurred (even, odd) outputs."""
    pad = [(0, 0)] * o.ndim
    pad[axis] = (1, 1)
    return blur_phase_pair(e, jnp.pad(o, pad), g, axis, o.shape[axis])  # padded: o'[p] = o[p - 1], zero outside

  return interleave_blurred_phases(phase, blur)


def up_blur_taps(fir):
  """The up-sampling blur's 4 taps as float32: g = 2 f / sum f (gain 4 over both axes)."""
  g = np.asarray(fir, np.float64)
  return (g * 2.0 / g.sum()).astype(np.float32)


def blur_phase_pair(e, o, g, axis, m):
  """One axis of the up-sampling blur on stride phases: m (even, odd) outputs along axis.

  e, o: the even and odd transposed-conv samples, aligned so that output pair r reads
  o[r], e[r], o[r + 1], e[r + 1] (even) and e[r], o[r + 1], e[r + 1], o[r + 2] (odd); g: up_blur_taps.
  """
  sl = lambda a, start: jax.lax.slice_in_dim(a, start, start + m, axis=axis)
  y_even = g[0] * sl(o, 0) + g[1] * sl(e, 0) + g[2] * sl(o, 1) + g[3] * sl(e, 1)
  y_odd = g[0] * sl(e, 0) + g[1] * sl(o, 1) + g[2] * sl(e, 1) + g[3] * sl(o, 2)
  return y_even, y_odd


def interleave_blurred_phases(phase, blur):
  """Up-sampling conv output from its four stride phases, blurred separably, interleaved once.

  phase(ty, tx) -> the (N, ., ., C) phase map of the kernel taps ty x tx (even taps [2, 0], odd [1],
  in input order p-1, p); blur(e, o, axis) -> the (even, odd) blurred outputs along axis (1 rows,
  2 columns). Returns (N, 2 Hb, 2 Wb, C) for blurred phase maps of (N, Hb, Wb, C).
  """
  even, odd = [2, 0], [1]
  rows_e_cols_e, rows_o_cols_e = blur(phase(even, even), phase(odd, even), 1)
  rows_e_cols_o, rows_o_cols_o = blur(phase(even, odd), phase(odd, odd), 1)
  y00, y01 = blur(rows_e_cols_e, rows_e_cols_o, 2)
  y10, y11 = blur(rows_o_cols_e, rows_o_cols_o, 2)
  y = jnp.stack([jnp.stack([y00, y01], axis=3), jnp.stack([y10, y11], axis=3)], axis=2)  # (N, Hb, 2, Wb, 2, C)
  return y.reshape(y.shape[0], 2 * y.shape[1], 2 * y.shape[3], y.shape[5])


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
  wsq = jnp.sum(jnp.square(w), axis=(0, 1))  # (Cin, Cout)
  energy = jnp.matmul(jnp.square(s), wsq, precision=precision)  # (N, Cout)
  return jax.lax.rsqrt(energy + eps)
