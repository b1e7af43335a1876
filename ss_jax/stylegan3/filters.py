"""Low-pass filters of the StyleGAN3 layers, designed in numpy (no scipy).

Converted checkpoints carry their filters (buffers `up_filter` / `down_filter`) and
those are used as stored; these designs are for generators built from a config
(`StyleGAN3Generator.random`) and for checking converted filters. They follow the
official design: a Kaiser-windowed sinc (`scipy.signal.firwin(numtaps, cutoff,
width=width, fs=fs)`) for separable filters, and a Kaiser-windowed jinc,
J1(2 pi f_c r) / (pi r), for the radially symmetric ones, normalised to unit DC gain.
"""

import numpy as np


def kaiser_beta_for(numtaps, width_nyq):
  """Kaiser beta for a filter of numtaps taps and transition width (fraction of Nyquist)."""
  a = 2.285 * (numtaps - 1) * np.pi * width_nyq + 7.95
  if a > 50:
    return 0.1102 * (a - 8.7)
  if a > 21:
    return 0.5842 * (a - 21) ** 0.4 + 0.07886 * (a - 21)
  return 0.0


def bessel_j1(x, points=1024):
  """J1(x) (float64 array) by the periodic trapezoid rule on Bessel's integral.

  J1(x) = 1/(2 pi) int_0^{2 pi} cos(t - x sin t) dt; the rule converges
  exponentially once points exceeds |x| (|x| < 100 here).
  """
  x = np.asarray(x, np.float64)
  t = np.arange(points) * (2 * np.pi / points)
  return np.mean(np.cos(t - x[..., None] * np.sin(t)), axis=-1)


def design_lowpass(numtaps, cutoff, width, fs, radial=False):
  """The layer filter as float32: (numtaps,) separable or (numtaps, numtaps) radial; None for 1 tap."""
  if numtaps < 1:
    raise ValueError(f"numtaps must be >= 1, got {numtaps}")
  if numtaps == 1:
    return None
  beta = kaiser_beta_for(numtaps, width / (fs / 2))
  win = np.kaiser(numtaps, beta)
  if not radial:
    c = cutoff / (fs / 2)
    m = np.arange(numtaps) - 0.5 * (numtaps - 1)
    h = c * np.sinc(c * m) * win
    return (h / np.sum(h)).astype(np.float32)
  x = (np.arange(numtaps) - (numtaps - 1) / 2) / fs
  r = np.hypot(*np.meshgrid(x, x))
  safe = np.where(r == 0, 1.0, r)
  f = np.where(r == 0, cutoff, bessel_j1(2 * cutoff * np.pi * safe) / (np.pi * safe))
  f = f * np.outer(win, win)
  return (f / np.sum(f)).astype(np.float32)


def layer_filters(spec):
  """(up_filter, down_filter) of a config.LayerSpec, as the official constructor designs them."""
  up = design_lowpass(spec.up_taps, spec.in_cutoff, spec.in_half_width * 2, spec.tmp_sampling_rate)
  down = design_lowpass(
    spec.down_taps, spec.out_cutoff, spec.out_half_width * 2, spec.tmp_sampling_rate, radial=spec.down_radial
  )
  return up, down
