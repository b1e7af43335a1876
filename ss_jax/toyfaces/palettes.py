"""ToyFaces colours: palettes indexed by attributes and fixed part colours.

Colours are linear float RGB in [0, 1]. Palettes are piecewise-linear ramps
over evenly spaced stops, so a continuous attribute in [0, 1] picks a colour.
"""

import numpy as np

_F32 = np.float32

SKIN = (
  (1.00, 0.87, 0.77),
  (0.96, 0.76, 0.62),
  (0.82, 0.60, 0.44),
  (0.62, 0.42, 0.28),
  (0.40, 0.26, 0.17),
)  # Light to dark.
HAIR = (
  (0.10, 0.08, 0.08),
  (0.33, 0.19, 0.10),
  (0.62, 0.27, 0.10),
  (0.92, 0.76, 0.42),
  (0.90, 0.88, 0.84),
)  # Black .. platinum.
IRIS = (
  (0.36, 0.20, 0.09),
  (0.55, 0.42, 0.15),
  (0.22, 0.55, 0.30),
  (0.22, 0.48, 0.88),
  (0.52, 0.58, 0.64),
)  # Brown .. grey.
LIPS = ((0.92, 0.58, 0.60), (0.82, 0.16, 0.22), (0.48, 0.08, 0.22))
SCLERA = (0.98, 0.98, 0.98)
PUPIL = (0.05, 0.04, 0.04)
LASH = (0.12, 0.08, 0.08)
MOUTH_INSIDE = (0.35, 0.06, 0.08)
TEETH = (0.97, 0.97, 0.95)
TONGUE = (0.90, 0.42, 0.45)
FRAME = (0.12, 0.12, 0.15)
GOLD = (0.96, 0.78, 0.22)


def palette(stops, t: np.ndarray) -> np.ndarray:
  """Piecewise-linear colour ramp: t float [N] in [0, 1] -> float32 [N, 3]."""
  stops = np.asarray(stops, np.float32)
  knots = np.linspace(0.0, 1.0, len(stops))
  return np.stack([np.interp(t, knots, stops[:, c]) for c in range(3)], -1).astype(_F32)


def hsv(h: np.ndarray, s: float, v: float) -> np.ndarray:
  """Hue float [N] in [0, 1] with fixed saturation/value -> float32 [N, 3]."""
  k = (np.array([5.0, 3.0, 1.0]) + 6.0 * h[:, None]) % 6.0
  rgb = v - v * s * np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0)
  return rgb.astype(_F32)


def channels(c) -> tuple:
  """[N, 3] colours or one RGB triple -> (r, g, b) for `Canvas.paint`.

  Per-image channels come out as float32 [N, 1, 1] so they broadcast over
  a window; a constant triple stays three scalars.
  """
  c = np.asarray(c, _F32)
  if c.ndim == 1:
    return tuple(c)
  return tuple(c[:, i, None, None] for i in range(3))


def scaled(c, k) -> tuple:
  """`channels(c)` times a factor k (scalar or broadcastable array)."""
  return tuple(ch * k for ch in channels(c))
