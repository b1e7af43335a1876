"""Vectorised 2-D signed-distance shapes and an anti-aliased layer compositor.

Coordinates are world coordinates (x right, y down); the image shows
[-1/zoom, 1/zoom]^2, so pixel i has its centre at (-1 + (i + 0.5) * 2 / R) /
zoom and pixels are px = 2 / (R * zoom) wide.
Shape functions return an approximate signed distance d (negative inside,
first-order accurate near the boundary, which is all anti-aliasing needs),
broadcast over the batch, typically float32 [N, h, w].

Anti-aliasing is analytic: a layer covers a pixel by clip(0.5 - d / px, 0, 1),
a one-pixel linear ramp across the edge (box-filtered edge). Hence
"coverage > 0.5" is exactly "pixel centre inside" (d < 0), which is the rule
used for the label map, so labels and pixels always agree and z-order is the
painting order.
"""

from typing import NamedTuple

import numpy as np

_TINY = np.float32(1e-12)
OFF = np.float32(1e3)  # Distance used to switch a shape off for an image.


def ellipse(x, y, a, b):
  """Axis-aligned ellipse with semi-axes a, b centred at the origin."""
  ia = 1.0 / np.asarray(a, np.float32)  # Reciprocals: a, b are often [N,1,1].
  ib = 1.0 / np.asarray(b, np.float32)
  xa = x * ia
  yb = y * ib
  g = xa * xa + yb * yb  # q^2; full [N, h, w] from here on.
  g -= 1.0
  xa *= ia
  yb *= ib
  # First-order distance (q^2 - 1) / |grad q^2|: exact sign, accurate near
  # the boundary; tends to -inf at the centre (no division by zero).
  grad = xa * xa + yb * yb
  np.sqrt(grad, out=grad)
  grad += _TINY
  grad *= 2.0
  g /= grad
  return g


def capsule(x, y, x0, y0, x1, y1, r):
  """Segment (x0, y0)-(x1, y1) thickened by radius r (exact distance)."""
  bx = x1 - x0
  by = y1 - y0
  px = x - x0
  py = y - y0
  h = np.clip((px * bx + py * by) / (bx * bx + by * by), 0.0, 1.0)
  px = px - h * bx  # Not in place: h may broadcast to a larger shape.
  py = py - h * by
  return np.sqrt(px * px + py * py) - r


def box(x, y, hx, hy, r):
  """Rounded rectangle, half sizes hx, hy, corner radius r, at the origin."""
  qx = np.abs(x) - (hx - r)
  qy = np.abs(y) - (hy - r)
  outside = np.hypot(np.maximum(qx, 0.0), np.maximum(qy, 0.0))
  return outside + np.minimum(np.maximum(qx, qy), 0.0) - r


def ring(d, half_thickness):
  """Turns a shape's distance into a stroke of its outline."""
  return np.abs(d) - half_thickness


def switch(d, on):
  """Keeps the shape where `on` ([N, 1, 1] bool) holds, removes it elsewhere."""
  return np.where(on, d, OFF)


class Window(NamedTuple):
  """A rectangular pixel window and its pixel-centre coordinates."""

  rows: slice
  cols: slice
  x: np.ndarray  # float32 [1, 1, w]
  y: np.ndarray  # float32 [1, h, 1]


class Canvas:
  """Batch of RGB images + part label maps painted back to front.

  Attributes:
    rgb: float32 [3, N, R, R] linear colour in [0, 1], channel-major so each
      channel slice is contiguous.
    label: uint8 [N, R, R] index of the last part covering each pixel centre.
    bg_weight: float32 [N, R, R] how much of the background still shows;
      used to shade the figure without shading the background.
    footprint: None, or bool [N, K, R, R] (if requested) marking where each
      part has nonzero coverage, occluded or not (amodal support): pixels
      outside a part's footprint cannot depend on that part's attributes.
  """

  def __init__(
    self, background: np.ndarray, resolution: int, zoom: float = 1.0, full_windows: bool = False, num_parts: int = 0
  ):
    """Creates a canvas.

    Args:
      background: float32 [N, 3] flat background colours.
      resolution: side R in pixels.
      zoom: the image shows world coordinates [-1/zoom, 1/zoom].
      full_windows: make every window the whole image (for testing).
      num_parts: if > 0, track `footprint` for that many part classes.
    """
    n = background.shape[0]
    self.res = resolution
    self.zoom = zoom
    self.px = np.float32(2.0 / (resolution * zoom))  # Pixel size in world.
    self.inv_px = np.float32(1.0 / self.px)
    self.coords = ((np.arange(resolution, dtype=np.float64) + 0.5) * (2.0 / resolution) - 1.0).astype(np.float32) / zoom
    self.full_windows = full_windows
    self.rgb = np.empty((3, n, resolution, resolution), np.float32)
    self.rgb[:] = background.T.astype(np.float32)[:, :, None, None]
    self.background = background.astype(np.float32)
    self.label = np.zeros((n, resolution, resolution), np.uint8)
    self.bg_weight = np.ones((n, resolution, resolution), np.float32)
    self.footprint = np.zeros((n, num_parts, resolution, resolution), bool) if num_parts else None

  def _span(self, lo: float, hi: float) -> slice:
    if self.full_windows:
      return slice(0, self.res)
    # Pixel centres within 2 px of [lo, hi]; coverage is 0 beyond 0.5 px.
    half = 0.5 * self.res
    i0 = int(np.ceil((lo * self.zoom + 1.0) * half - 0.5 - 2.0))
    i1 = int(np.floor((hi * self.zoom + 1.0) * half - 0.5 + 2.0)) + 1
    return slice(max(i0, 0), max(min(i1, self.res), 0))

  def window(self, x0: float, x1: float, y0: float, y1: float) -> Window:
    """Pixels whose centres lie in (a margin around) the box [x0,x1]x[y0,y1]."""
    rows, cols = self._span(y0, y1), self._span(x0, x1)
    return Window(rows, cols, self.coords[cols][None, None, :], self.coords[rows][None, :, None])

  def paint(self, win: Window, d: np.ndarray, color, part: int, over_background: bool = True):
    """Composites one layer over the window.

    Args:
      win: the window d was evaluated on.
      d: signed distance, broadcastable to [N, h, w].
      color: 3 arrays (r, g, b) broadcastable to [N, h, w].
      part: label index written where d < 0.
      over_background: False for layers that only ever lie inside opaque
        parts (e.g. eyes inside the face); skips background bookkeeping.
    """
    lab = self.label[:, win.rows, win.cols]
    if lab.size == 0:
      return
    alpha = 0.5 - d * self.inv_px
    np.clip(alpha, 0.0, 1.0, out=alpha)
    alpha = np.broadcast_to(alpha, lab.shape)
    for c in range(3):
      dst = self.rgb[c, :, win.rows, win.cols]
      dst += alpha * (color[c] - dst)
    if over_background:
      self.bg_weight[:, win.rows, win.cols] *= 1.0 - alpha
    np.copyto(lab, np.uint8(part), where=np.broadcast_to(d < 0, lab.shape))
    if self.footprint is not None:
      self.footprint[:, part, win.rows, win.cols] |= alpha > 0

  def subset(self, idx: np.ndarray) -> "Canvas":
    """A canvas holding copies of images idx; paint it, then `merge` it."""
    sub = object.__new__(Canvas)
    sub.__dict__.update(self.__dict__)
    sub.rgb = self.rgb[:, idx]
    sub.label = self.label[idx]
    sub.bg_weight = self.bg_weight[idx]
    sub.background = self.background[idx]
    if self.footprint is not None:
      sub.footprint = self.footprint[idx]
    return sub

  def merge(self, sub: "Canvas", idx: np.ndarray):
    """Writes a painted `subset(idx)` back."""
    self.rgb[:, idx] = sub.rgb
    self.label[idx] = sub.label
    self.bg_weight[idx] = sub.bg_weight
    if self.footprint is not None:
      self.footprint[idx] = sub.footprint

  def finish(self, shade: np.ndarray) -> np.ndarray:
    """Applies multiplicative shading to the figure only.

    Args:
      shade: float32 broadcastable to [N, R, R] lighting factor.

    Returns:
      float32 [3, N, R, R] final colour (unclipped).
    """
    bg = self.background.T[:, :, None, None] * self.bg_weight
    # rgb = background share + figure share; only the figure is lit.
    return bg + shade * (self.rgb - bg)


def quantize(rgb: np.ndarray) -> np.ndarray:
  """float [3, N, H, W] in [0, 1] -> uint8 [N, H, W, 3]."""
  img = np.clip(rgb * 255.0 + 0.5, 0.0, 255.0).astype(np.uint8)
  return np.ascontiguousarray(img.transpose(1, 2, 3, 0))
