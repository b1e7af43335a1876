"""StyleGAN3 layer operations in NHWC: filtered leaky ReLU, modulated conv, Fourier input.

All filters are applied separably per axis (or as one 2-D filter for the radial
down-sampling filters of StyleGAN3-R) by shift-and-add over the taps: channels stay
the minor (vectorised) axis and XLA fuses each filter into one loop. Up-sampling is
polyphase (no zero-stuffed intermediate) and down-sampling computes only the kept
samples, which gives the same numbers as NVIDIA's zero-insert / pad / FIR / decimate
reference (`upfirdn2d`, `filtered_lrelu` with `flip_filter=False`).
"""

import math

import jax
import jax.numpy as jnp
import numpy as np

from ss_jax.stylegan2 import ops as sg2_ops

HIGHEST = jax.lax.Precision.HIGHEST


def _slice(x, start, count, stride, axis):
  return jax.lax.slice_in_dim(x, start, start + (count - 1) * stride + 1, stride, axis)


def fir_down(x, f, down, axis):
  """Correlate with the flipped 1-D filter f (K,) along axis, VALID, keep every down-th sample.

  (..., n, ...) -> (..., (n - K) // down + 1, ...).
  """
  k = f.shape[0]
  n_out = (x.shape[axis] - k) // down + 1
  g = f[::-1]
  acc = _slice(x, 0, n_out, down, axis) * g[0]
  for t in range(1, k):
    acc = acc + _slice(x, t, n_out, down, axis) * g[t]
  return acc


def fir_down_2d(x, f, down):
  """The same with a 2-D filter f (K, K) over axes (1, 2) of NHWC x (radial filters)."""
  k = f.shape[0]
  n_y = (x.shape[1] - k) // down + 1
  n_x = (x.shape[2] - k) // down + 1
  g = f[::-1, ::-1]
  acc = None
  for ty in range(k):
    row = _slice(x, ty, n_y, down, 1)
    for tx in range(k):
      term = _slice(row, tx, n_x, down, 2) * g[ty, tx]
      acc = term if acc is None else acc + term
  return acc


def fir_up(x, f, up, pad_lo, pad_hi, axis):
  """upfirdn along one axis: insert up-1 zeros after every sample, pad (negative = crop), correlate
  with the flipped filter f (K,) times up. Polyphase: output phase r only reads the taps that hit
  input samples. (..., n, ...) -> (..., n * up + pad_lo + pad_hi - K + 1, ...).
  """
  n = x.shape[axis]
  k = f.shape[0]
  n_out = n * up + pad_lo + pad_hi - k + 1
  g = f[::-1] * up
  if up == 1:
    xp = jax.lax.pad(
      x, jnp.zeros((), x.dtype), [(pad_lo, pad_hi, 0) if a == axis else (0, 0, 0) for a in range(x.ndim)]
    )
    return fir_down(xp, f * up, 1, axis)
  nq = -(-n_out // up)
  phases = []
  for r in range(up):
    k0 = (pad_lo - r) % up
    taps = list(range(k0, k, up))
    c = (r + k0 - pad_lo) // up  # input index of tap k0 for q = 0
    phases.append((taps, c))
  lo = max(0, -min(c for _, c in phases))
  hi = max(0, max(nq - 1 + len(t) - 1 + c for t, c in phases) - (n - 1))
  xp = jax.lax.pad(x, jnp.zeros((), x.dtype), [(lo, hi, 0) if a == axis else (0, 0, 0) for a in range(x.ndim)])
  outs = []
  for taps, c in phases:
    acc = None
    for i, kk in enumerate(taps):
      term = jax.lax.slice_in_dim(xp, c + i + lo, c + i + lo + nq, 1, axis) * g[kk]
      acc = term if acc is None else acc + term
    if acc is None:
      shape = list(x.shape)
      shape[axis] = nq
      acc = jnp.zeros(shape, x.dtype)
    outs.append(acc)
  y = jnp.stack(outs, axis=axis + 1)
  shape = list(x.shape)
  shape[axis] = nq * up
  return jax.lax.slice_in_dim(y.reshape(shape), 0, n_out, 1, axis)


def filtered_lrelu(x, b, up_filter, down_filter, spec, clamp=None):
  """Bias, up-sample (FIR), leaky ReLU x sqrt(2) (toRGB: linear), clamp, FIR down-sample.

  x: (N, H, W, C) modulated-conv output; b: (C,); filters as stored (1-D (K,) or
  radial 2-D (K, K); ignored when the layer has 1 tap); spec: config.LayerSpec.
  Returns (N, out_size, out_size, C).
  """
  x = x + b
  px0, px1, py0, py1 = spec.padding
  if spec.up_taps > 1:
    x = fir_up(x, up_filter, spec.up_factor, px0, px1, 2)
    x = fir_up(x, up_filter, spec.up_factor, py0, py1, 1)
  elif any(spec.padding):
    x = jax.lax.pad(x, jnp.zeros((), x.dtype), [(0, 0, 0), (py0, py1, 0), (px0, px1, 0), (0, 0, 0)])
  if not spec.is_torgb:
    x = jnp.where(x >= 0, x, x * 0.2) * math.sqrt(2)
  if clamp is not None:
    x = jnp.clip(x, -clamp, clamp)
  if spec.down_taps > 1:
    if spec.down_radial:
      x = fir_down_2d(x, down_filter, spec.down_factor)
    else:
      x = fir_down(x, down_filter, spec.down_factor, 2)
      x = fir_down(x, down_filter, spec.down_factor, 1)
  elif spec.down_factor > 1:
    x = x[:, :: spec.down_factor, :: spec.down_factor]
  return x


def conv_full(x, w, precision=HIGHEST):
  """Correlation with padding k-1 on every side ((N,H,W,Ci), (k,k,Ci,Co) -> (N,H+k-1,W+k-1,Co)).

  Odd k: a 'same' conv of the input zero-padded by (k-1)/2, through ss_jax.stylegan2.ops.conv2d (Winograd
  F(2x2,3x3) for wide 3x3 layers on XLA:CPU, lax.conv otherwise).
  """
  k = w.shape[0]
  if k == 1:
    return jnp.einsum("nhwi,io->nhwo", x, w[0, 0], precision=precision)
  if k % 2:
    h = (k - 1) // 2
    return sg2_ops.conv2d(jnp.pad(x, ((0, 0), (h, h), (h, h), (0, 0))), w, precision)
  return jax.lax.conv_general_dilated(
    x, w, (1, 1), [(k - 1, k - 1)] * 2, dimension_numbers=("NHWC", "HWIO", "NHWC"), precision=precision
  )


def modulated_conv(x, w, s, input_gain, demodulate, precision=HIGHEST):
  """StyleGAN3 modulated conv: (N,H,W,Ci), w (k,k,Ci,Co), s (N,Ci) -> (N,H+k-1,W+k-1,Co).

  With demodulate: w pre-normalised by its RMS over (k, k, Ci) per output channel,
  s by its RMS over the channels (per sample; NVIDIA takes one RMS over the whole
  batch, which demodulation cancels up to its eps 1e-8), then w*s demodulated.
  input_gain (scalar, magnitude_ema^-1/2) scales the modulated weights.
  """
  if demodulate:
    w = w * jax.lax.rsqrt(jnp.mean(jnp.square(w), axis=(0, 1, 2), keepdims=True))
    s = s * jax.lax.rsqrt(jnp.mean(jnp.square(s), axis=1, keepdims=True))
  y = conv_full(x * (s * input_gain)[:, None, None, :], w, precision)
  if demodulate:
    d = jnp.matmul(jnp.square(s), jnp.sum(jnp.square(w), axis=(0, 1)), precision=precision)
    y = y * jax.lax.rsqrt(d + 1e-8)[:, None, None, :]
  return y


def input_transforms(t, user):
  """Input style (N, 4) = (r_c, r_s, t_x, t_y) and user transform (3,3) or (N,3,3) -> (N, 3, 3).

  The learned rotation (normalised by |(r_c, r_s)|), then the learned translation,
  then the user transform (the inverse transform w.r.t. the image, as stored in
  `synthesis.input.transform`).
  """
  t = t / jnp.linalg.norm(t[:, :2], axis=1, keepdims=True)
  n = t.shape[0]
  one, zero = jnp.ones((n,), t.dtype), jnp.zeros((n,), t.dtype)
  m_r = jnp.stack(
    [jnp.stack([t[:, 0], -t[:, 1], zero], 1), jnp.stack([t[:, 1], t[:, 0], zero], 1), jnp.stack([zero, zero, one], 1)],
    1,
  )
  m_t = jnp.stack(
    [jnp.stack([one, zero, -t[:, 2]], 1), jnp.stack([zero, one, -t[:, 3]], 1), jnp.stack([zero, zero, one], 1)], 1
  )
  user = jnp.broadcast_to(jnp.asarray(user, t.dtype), (n, 3, 3))
  return jnp.matmul(jnp.matmul(m_r, m_t, precision=HIGHEST), user, precision=HIGHEST)


def fourier_features(transforms, freqs, phases, weight, size, sampling_rate, bandwidth, precision=HIGHEST):
  """The Fourier-feature input (N, size, size, C) for transforms (N, 3, 3).

  freqs (C, 2) (x, y), phases (C,), weight (C_in, C_out) raw (divided by sqrt(C) here).
  Sample positions are affine_grid(align_corners=False) scaled by 0.5 size / rate:
  (j + 0.5 - size / 2) / rate.
  """
  ph = phases[None] + jnp.einsum("cx,nx->nc", freqs, transforms[:, :2, 2], precision=precision)
  fr = jnp.einsum("cx,nxy->ncy", freqs, transforms[:, :2, :2], precision=precision)
  amp = jnp.clip(1 - (jnp.linalg.norm(fr, axis=2) - bandwidth) / (sampling_rate / 2 - bandwidth), 0, 1)
  base = (np.arange(size, dtype=np.float32) * 2 + 1) / size - 1  # affine_grid's base grid
  grid = jnp.asarray(base * np.float32(0.5 * size / sampling_rate))
  arg = (
    grid[None, None, :, None] * fr[:, None, None, :, 0]
    + grid[None, :, None, None] * fr[:, None, None, :, 1]
    + ph[:, None, None, :]
  )
  x = jnp.sin(arg * (2 * np.pi)) * amp[:, None, None, :]
  return jnp.einsum("nhwc,co->nhwo", x, weight * (1 / math.sqrt(weight.shape[0])), precision=precision)
