"""Pictures and numbers the explorer page shows for an image and an edit (numpy + PIL only).

delta_map(a, b)            (H, W) float32 mean |a - b| over colour of two uint8 images
heat_rgba(m, size)         (size, size, 4) uint8 heat map whose opacity grows with the value
outline_rgba(mask)         (H, W, 4) uint8: the mask's boundary pixels, transparent elsewhere
changed_region(delta)      (H, W) bool: pixels whose |delta| exceeds 10% of its max
locality(weights, mask)    share of the weights' mass inside the mask, and the mask's area share
png_data_url(x)            "data:image/png;base64,..." of a uint8 (H, W[, C]) array
"""

import base64
import io

import numpy as np

from ss_jax.stylespace import report

CHANGED_FRACTION = 0.1
_OUTLINE_RGBA = (0, 255, 255, 255)


def png_bytes(x):
  from PIL import Image

  x = np.asarray(x, np.uint8)
  if x.ndim == 3 and x.shape[2] == 1:
    x = x[:, :, 0]
  buf = io.BytesIO()
  Image.fromarray(x).save(buf, format="PNG")
  return buf.getvalue()


def png_data_url(x):
  return "data:image/png;base64," + base64.b64encode(png_bytes(x)).decode("ascii")


def delta_map(a, b):
  """uint8 images (H, W, C) -> (H, W) float32 mean absolute difference over colour (0..255)."""
  return np.abs(np.asarray(a, np.float32) - np.asarray(b, np.float32)).mean(-1)


def upsample(m, size):
  """(P, P) -> (size, size) nearest neighbour (size a multiple of P), or unchanged when P >= size."""
  m = np.asarray(m)
  f = size // m.shape[0]
  return m.repeat(f, 0).repeat(f, 1) if f > 1 else m


def heat_rgba(m, size=None):
  """(P, P) non-negative map -> (S, S, 4) uint8 heat colours, alpha = value / max (transparent at 0)."""
  m = np.asarray(m, np.float64)
  size = size or m.shape[0]
  m = upsample(m, size)
  rgb = report.heatmap(m, size=m.shape[0])
  top = m.max() if m.size else 0.0
  a = np.zeros(m.shape) if top <= 0 else np.clip(m / top, 0, 1)
  alpha = np.rint(255 * np.sqrt(a)).astype(np.uint8)  # sqrt: faint tails stay visible
  return np.concatenate([rgb, alpha[..., None]], axis=-1)


def outline_rgba(mask):
  """(H, W) bool -> (H, W, 4) uint8 with the mask's inner boundary opaque cyan."""
  mask = np.asarray(mask, bool)
  p = np.pad(mask, 1, constant_values=False)
  inner = p[1:-1, 1:-1] & p[:-2, 1:-1] & p[2:, 1:-1] & p[1:-1, :-2] & p[1:-1, 2:]
  edge = mask & ~inner
  out = np.zeros(mask.shape + (4,), np.uint8)
  out[edge] = _OUTLINE_RGBA
  return out


def changed_region(delta, fraction=CHANGED_FRACTION):
  """(H, W) |delta| -> bool mask of pixels above fraction * max (all False for no change)."""
  delta = np.asarray(delta, np.float64)
  top = delta.max() if delta.size else 0.0
  return delta > fraction * top if top > 0 else np.zeros(delta.shape, bool)


def locality(weights, mask):
  """-> (share of sum(weights) inside mask, mask area / image area); share is None for zero weights.

  The area share is what a change spread uniformly over the image would score (the baseline).
  """
  w = np.asarray(weights, np.float64)
  mask = np.asarray(mask, bool)
  if mask.shape != w.shape:
    mask = upsample(mask, w.shape[0]) if mask.shape[0] < w.shape[0] else mask
    if mask.shape != w.shape:  # weights coarser than the mask: block-average the mask
      f = mask.shape[0] // w.shape[0]
      mask = mask.reshape(w.shape[0], f, w.shape[1], f).mean((1, 3)) > 0.5
  total = w.sum()
  share = float(w[mask].sum() / total) if total > 0 else None
  return share, float(mask.mean())


def strip(images, pad=1):
  """(K, H, W, C) uint8 -> (H, K*(W+pad)-pad, C) side by side on white."""
  images = np.asarray(images, np.uint8)
  k, h, w, c = images.shape
  out = np.full((h, k * (w + pad) - pad, c), 255, np.uint8)
  for i in range(k):
    out[:, i * (w + pad) : i * (w + pad) + w] = images[i]
  return out
