"""ToyFaces: procedural cartoon faces with exact part labels and attributes.

Pure numpy, vectorised over the batch: every part is a signed-distance shape
evaluated on a fixed pixel window (a box that contains the part for every
attribute value, so windowing never changes the result), composited back to
front with analytic anti-aliasing (see `canvas`). The label map holds the
last part covering each pixel centre, consistent with the painting order.

An attribute vector determines the picture completely, so a ground-truth
edit is "change one attribute, re-render": local attributes only change
pixels of the parts listed for them in `attributes.ATTRIBUTES`.

Geometry is in world coordinates (y down); the picture shows [-1/ZOOM,
1/ZOOM]^2. Head parts are drawn in head-local coordinates (origin at the face
centre, rotated by the head roll); neck and clothes are in world coordinates.
"""

import numpy as np

from ss_jax.toyfaces import attributes as attr_lib
from ss_jax.toyfaces import canvas as cv
from ss_jax.toyfaces import palettes as pal
from ss_jax.toyfaces.parts import NUM_PARTS, PART_INDEX

_P = PART_INDEX
_F32 = np.float32

# Head placement: centre (HEAD_X * head_x, HEAD_Y0 + HEAD_DY * head_y),
# roll ROLL_MAX * head_roll radians.
HEAD_X, HEAD_Y0, HEAD_DY, ROLL_MAX = 0.07, -0.1, 0.05, 0.2
ZOOM = 1.15  # The picture shows world coordinates [-1/ZOOM, 1/ZOOM].


class _Params:
  """Attribute columns as float32 [N, 1, 1] plus derived geometry."""

  def __init__(self, attrs: np.ndarray):
    for i, name in enumerate(attr_lib.ATTRIBUTE_NAMES):
      setattr(self, name, attrs[:, i, None, None].astype(_F32))
    col = lambda name: attrs[:, attr_lib.ATTRIBUTE_INDEX[name]]
    self.on = {n: getattr(self, n) > 0.5 for n in ("eyes_closed", "mouth_open", "bangs", "glasses", "hat", "earrings")}
    self.cx = _F32(HEAD_X) * self.head_x
    self.cy = _F32(HEAD_Y0) + _F32(HEAD_DY) * self.head_y
    roll = _F32(ROLL_MAX) * self.head_roll
    self.cos, self.sin = np.cos(roll), np.sin(roll)
    self.a = 0.36 + 0.10 * self.face_width  # Face half-width.
    self.ex = 0.42 * self.a  # Eye centre x (mirrored).
    self.skin = pal.palette(pal.SKIN, col("skin_tone"))
    self.hair = pal.palette(pal.HAIR, col("hair_color"))
    self.iris = pal.palette(pal.IRIS, col("iris_color"))
    self.lips = pal.palette(pal.LIPS, col("lip_color"))
    self.clothes = pal.hsv(col("clothes_color"), 0.55, 0.75)
    self.hat_rgb = pal.hsv((col("clothes_color") + 0.5) % 1.0, 0.5, 0.55)
    self.background = pal.hsv(col("background_hue"), 0.3, 0.92)

  def take(self, idx: np.ndarray) -> "_Params":
    """The parameters of images idx only."""
    out = object.__new__(_Params)
    for k, v in self.__dict__.items():
      out.__dict__[k] = {n: m[idx] for n, m in v.items()} if isinstance(v, dict) else v[idx]
    return out


def _head_window(canvas, x0, x1, y0, y1) -> cv.Window:
  """Image window containing a head-local box for every head pose."""
  corners = np.array([[x0, y0], [x0, y1], [x1, y0], [x1, y1]], np.float64)
  th = np.linspace(-ROLL_MAX, ROLL_MAX, 9)[:, None]
  xs = np.cos(th) * corners[:, 0] - np.sin(th) * corners[:, 1]
  ys = np.sin(th) * corners[:, 0] + np.cos(th) * corners[:, 1]
  m = 0.01  # Covers the arc bulging between sampled angles.
  return canvas.window(
    xs.min() - HEAD_X - m, xs.max() + HEAD_X + m, ys.min() + HEAD_Y0 - HEAD_DY - m, ys.max() + HEAD_Y0 + HEAD_DY + m
  )


def _local(win: cv.Window, p: _Params):
  """Head-local coordinates of the window's pixel centres, [N, h, w] each."""
  dx = win.x - p.cx
  dy = win.y - p.cy
  return p.cos * dx + p.sin * dy, p.cos * dy - p.sin * dx


def _hair_cap(x, y, p: _Params):
  """Ellipse around the skull that both back hair and hairline cut from."""
  return cv.ellipse(x, y + 0.05, p.a + 0.05 + 0.12 * p.hair_volume, 0.56 + 0.08 * p.hair_volume)


def _draw_body(c: cv.Canvas, p: _Params):
  """Clothes and long back hair are behind the neck, the neck behind ears."""
  win = c.window(-1.0, 1.0, 0.5, 1.0)
  shirt = lambda win: cv.ellipse(win.x - 0.5 * p.cx, win.y - 1.07, 0.92, 0.5)
  c.paint(win, shirt(win), pal.channels(p.clothes), _P["clothes"])

  # Hair behind the head: a cap around the skull plus a long rounded curtain.
  win = _head_window(c, -0.7, 0.7, -0.72, 1.0)
  x, y = _local(win, p)
  cap = np.maximum(_hair_cap(x, y, p), y)  # Stops at mid-ear height.
  y_end = 0.05 + 0.9 * p.hair_length
  half_w = 0.94 * (p.a + 0.05 + 0.12 * p.hair_volume)
  curtain = cv.box(x, y - 0.5 * (y_end - 0.1), half_w, 0.5 * (y_end + 0.1), 0.12)
  c.paint(win, np.minimum(cap, curtain), pal.channels(p.hair), _P["hair"])

  # Neck with a rounded neckline; darker just under the chin.
  win = c.window(-0.32, 0.32, HEAD_Y0 - HEAD_DY + 0.25, 1.0)
  x, y = win.x - p.cx, win.y - p.cy
  half_w = 0.13 + 0.04 * p.face_width
  neck = cv.box(x, y - 0.6, half_w, 0.42, 0.02)
  # U neckline: a skin-coloured cut into the shirt only.
  neckline = np.maximum(cv.ellipse(win.x - 0.5 * p.cx, win.y - 0.57, 0.2, 0.11), shirt(win))
  d = np.maximum(np.minimum(neck, neckline), 0.28 - y)
  shadow = 0.72 + 0.16 * np.clip((y - 0.42) * 6.0, 0.0, 1.0)
  c.paint(win, d, pal.scaled(p.skin, shadow), _P["neck"])


def _draw_face(c: cv.Canvas, p: _Params):
  """Ears, face, nose and mouth."""
  win = _head_window(c, -0.64, 0.64, -0.16, 0.24)
  x, y = _local(win, p)
  ax = np.abs(x) - 0.97 * p.a
  ry = 0.11 + 0.05 * p.ear_size
  ear = cv.ellipse(ax, y - 0.03, 0.07 + 0.04 * p.ear_size, ry)
  c.paint(win, ear, pal.scaled(p.skin, 0.93), _P["ear"])
  inner = np.maximum(cv.ellipse(ax - 0.015, y - 0.03, 0.035, 0.6 * ry), ear)
  c.paint(win, inner, pal.scaled(p.skin, 0.78), _P["ear"])

  win = _head_window(c, -0.48, 0.48, -0.52, 0.52)
  x, y = _local(win, p)
  # Egg shape: the jaw narrows towards the chin.
  half_w = p.a * (1.0 - 0.22 * np.clip(y * 2.0, 0.0, 1.0))
  c.paint(win, cv.ellipse(x, y, half_w, 0.5), pal.channels(p.skin), _P["skin"])

  win = _head_window(c, -0.09, 0.09, 0.0, 0.24)
  x, y = _local(win, p)
  s = p.nose_size
  rx, ry = 0.03 + 0.035 * s, 0.045 + 0.045 * s
  v = y - (0.2 - ry)  # Nose bottom fixed at y = 0.2.
  pear = rx * (0.55 + 0.45 * np.clip(0.5 + 0.5 * v / ry, 0.0, 1.0))
  c.paint(win, cv.ellipse(x, v, pear, ry), pal.scaled(p.skin, 0.84), _P["nose"], False)

  _draw_mouth(c, p)


def _draw_mouth(c: cv.Canvas, p: _Params):
  """Closed lips, or an open mouth with lips, teeth and tongue."""
  win = _head_window(c, -0.18, 0.18, 0.2, 0.46)
  x, y = _local(win, p)
  w = 0.13 + 0.02 * np.abs(p.smile)
  k = 2.5 * p.smile
  yc = 0.31 - k * (x * x - 0.5 * w * w)  # Centreline; corners up if smiling.
  v = y - yc
  slope = np.sqrt(1.0 + (2.0 * k * x) ** 2)
  u = np.clip(1.0 - (x / w) ** 2, 0.0, 1.0)
  closed = np.maximum(np.abs(v) / slope - (0.03 * np.sqrt(u) + 0.008), np.abs(x) - w)
  outer = cv.ellipse(x, v - 0.035, w, 0.07)
  d = np.where(p.on["mouth_open"], outer, closed)
  lips = pal.channels(p.lips)
  color = tuple(ch * np.where(v < 0, _F32(0.85), _F32(1.0)) for ch in lips)
  c.paint(win, d, color, _P["mouth"], False)
  inner = cv.switch(cv.ellipse(x, v - 0.035, w - 0.025, 0.048), p.on["mouth_open"])
  c.paint(win, inner, pal.MOUTH_INSIDE, _P["mouth"], False)
  c.paint(win, np.maximum(inner, v - 0.012), pal.TEETH, _P["mouth"], False)
  tongue = np.maximum(cv.ellipse(x, v - 0.085, 0.06, 0.035), inner)
  c.paint(win, tongue, pal.TONGUE, _P["mouth"], False)
  # A thin lip parting line on closed mouths.
  line = cv.switch(np.maximum(np.abs(v) / slope - 0.006, np.abs(x) - w), ~p.on["mouth_open"])
  c.paint(win, line, pal.scaled(p.lips, 0.55), _P["mouth"], False)


def _draw_eyes(c: cv.Canvas, p: _Params):
  """Open eyes (sclera, iris, pupil, upper lash line) or closed lash arcs."""
  win = _head_window(c, -0.32, 0.32, -0.13, 0.09)
  x, y = _local(win, p)
  x = np.abs(x) - p.ex  # Mirror: one evaluation draws both eyes.
  y = y + 0.02
  s = p.eye_size
  rx, ry = 0.065 + 0.045 * s, 0.05 + 0.035 * s
  is_open = ~p.on["eyes_closed"]
  sclera = cv.switch(cv.ellipse(x, y, rx, ry), is_open)
  c.paint(win, sclera, pal.SCLERA, _P["eye"], False)
  r = 0.034 + 0.024 * s
  c.paint(win, np.maximum(cv.ellipse(x, y, r, r), sclera), pal.channels(p.iris), _P["eye"], False)
  c.paint(win, np.maximum(cv.ellipse(x, y, 0.45 * r, 0.45 * r), sclera), pal.PUPIL, _P["eye"], False)
  lash = np.maximum(cv.ring(sclera, 0.012), y)
  c.paint(win, lash, pal.LASH, _P["eye"], False)
  # Closed: a downward arc (content, sleeping look) across the eye width.
  arc_y = 0.35 * ry * (1.0 - (x / rx) ** 2)
  closed = np.maximum(np.abs(y - arc_y) / np.sqrt(1.0 + (0.7 * ry * x / rx / rx) ** 2) - 0.02, np.abs(x) - rx)
  c.paint(win, cv.switch(closed, ~is_open), pal.LASH, _P["eye"], False)


def _draw_hair_front(c: cv.Canvas, p: _Params):
  """Hairline over the forehead, lowered to a zig-zag fringe with bangs."""
  win = _head_window(c, -0.7, 0.7, -0.72, 0.06)
  x, y = _local(win, p)
  cap = _hair_cap(x, y, p)
  xn = x / p.a
  plain = -0.28 + 0.28 * xn * xn  # Temples recede.
  t = x * 12.5
  t -= np.floor(t)
  t -= 0.5
  xn *= xn
  xn *= xn
  fringe = np.abs(t) * 0.06 - 0.22 + 0.12 * xn  # Zig-zag teeth, 0.03 deep.
  # Never below mid-ear height, where the back hair stops too.
  line = np.minimum(np.where(p.on["bangs"], fringe, plain), 0.0)
  c.paint(win, np.maximum(cap, y - line), pal.channels(p.hair), _P["hair"])


def _draw_eyebrows(c: cv.Canvas, p: _Params):
  win = _head_window(c, -0.34, 0.34, -0.3, -0.06)
  x, y = _local(win, p)
  x = np.abs(x) - p.ex
  half_len = 0.085
  y = y + 0.19 - 3.0 * x * x  # Arch: ends sit lower than the middle.
  tilt = 0.035 * p.eyebrow_angle  # Inner end (x < 0) lower when angry.
  d = cv.capsule(x, y, -half_len, tilt, half_len, -tilt, 0.012 + 0.022 * p.eyebrow_thickness)
  c.paint(win, d, pal.scaled(p.hair, 0.8), _P["eyebrow"], False)


def _draw_earrings(c: cv.Canvas, p: _Params):
  win = _head_window(c, -0.6, 0.6, 0.08, 0.32)
  x, y = _local(win, p)
  x = np.abs(x) - 0.97 * p.a
  lobe = 0.14 + 0.05 * p.ear_size  # Bottom of the ear.
  ball = cv.ellipse(x, y - lobe - 0.055, 0.045, 0.045)
  hook = cv.capsule(x, y, 0.0, lobe - 0.015, 0.0, lobe + 0.02, 0.012)
  c.paint(win, np.minimum(ball, hook), pal.GOLD, _P["earring"])


def _draw_glasses(c: cv.Canvas, p: _Params):
  win = _head_window(c, -0.5, 0.5, -0.17, 0.12)
  x, y = _local(win, p)
  x = np.abs(x)
  y = y + 0.02
  rim = cv.ring(cv.ellipse(x - p.ex, y, 0.13, 0.115), 0.02)
  bridge = cv.capsule(x, y, 0.0, -0.025, p.ex - 0.12, -0.025, 0.016)
  arm = cv.capsule(x, y, p.ex + 0.12, -0.03, 0.98 * p.a, -0.05, 0.016)
  c.paint(win, np.minimum(np.minimum(rim, bridge), arm), pal.FRAME, _P["glasses"])


def _draw_hat(c: cv.Canvas, p: _Params):
  win = _head_window(c, -0.64, 0.64, -0.9, -0.25)
  x, y = _local(win, p)
  crown = cv.box(x, y + 0.6, 0.42, 0.27, 0.12)
  brim = cv.ellipse(x, y + 0.33, 0.6, 0.065)
  c.paint(win, np.minimum(crown, brim), pal.channels(p.hat_rgb), _P["hat"])
  band = np.maximum(crown, np.abs(y + 0.41) - 0.045)
  c.paint(win, band, pal.scaled(p.hat_rgb, 0.55), _P["hat"])


def _draw_accessories(c: cv.Canvas, p: _Params):
  """Earrings, glasses and hat, drawn only on the images that have them."""
  for flag, draw in (("earrings", _draw_earrings), ("glasses", _draw_glasses), ("hat", _draw_hat)):
    idx = np.flatnonzero(p.on[flag])
    if idx.size == len(p.on[flag]):
      draw(c, p)
    elif idx.size:
      sub = c.subset(idx)
      draw(sub, p.take(idx))
      c.merge(sub, idx)


def _render_chunk(attrs: np.ndarray, resolution: int, full_windows: bool, footprints: bool = False):
  """float32 [3, N, R, R] colour, uint8 [N, R, R] labels, footprints|None."""
  p = _Params(attrs)
  c = cv.Canvas(p.background, resolution, ZOOM, full_windows, NUM_PARTS if footprints else 0)
  _draw_body(c, p)
  _draw_face(c, p)
  _draw_eyes(c, p)
  _draw_hair_front(c, p)
  _draw_eyebrows(c, p)
  _draw_accessories(c, p)
  # Light: overall brightness times a horizontal gradient, figure only.
  shade = (0.85 + 0.3 * p.brightness) * (1.0 + 0.18 * p.light_direction * c.coords[None, None, :])
  return c.finish(shade), c.label, c.footprint


def _render(attrs, resolution, supersample, chunk, full_windows, footprints):
  attrs = np.asarray(attrs, np.float32).reshape(-1, attr_lib.NUM_ATTRIBUTES)
  # Out-of-range values would escape the static part windows.
  attrs = np.clip(attrs, attr_lib.LOW, attr_lib.HIGH)
  n, r, s = attrs.shape[0], int(resolution), int(supersample)
  images = np.empty((n, r, r, 3), np.uint8)
  labels = np.empty((n, r, r), np.uint8)
  feet = np.empty((n, NUM_PARTS, r, r), bool) if footprints else None
  for i in range(0, n, chunk):
    a = attrs[i : i + chunk]
    m = a.shape[0]
    rgb, lab, foot = _render_chunk(a, r * s, full_windows, footprints)
    if s > 1:
      rgb = rgb.reshape(3, m, r, s, r, s).mean(axis=(3, 5))
      if footprints:
        foot = foot.reshape(m, NUM_PARTS, r, s, r, s).any(axis=(3, 5))
      if s % 2:  # The middle sample of each block is the pixel centre.
        lab = lab[:, s // 2 :: s, s // 2 :: s]
      else:
        lab = _render_chunk(a, r, full_windows)[1]
    images[i : i + chunk], labels[i : i + chunk] = cv.quantize(rgb), lab
    if footprints:
      feet[i : i + chunk] = foot
  return images, labels, feet


def render_attributes(
  attrs: np.ndarray, resolution: int = 64, supersample: int = 1, chunk: int = 64, full_windows: bool = False
) -> tuple[np.ndarray, np.ndarray]:
  """Renders faces from attribute vectors.

  Args:
    attrs: float [N, A] attribute vectors (see `attributes.ATTRIBUTES`);
      values are clipped to their ranges, binary ones thresholded at 0.5.
    resolution: output side R (any size; 32, 64, 128 are tested).
    supersample: S; if > 1, RGB is rendered at R*S (each sample analytically
      anti-aliased) and box-averaged; labels are still pixel-centre owners.
      The default 1 already anti-aliases analytically (coverage of a
      one-pixel ramp across each edge) and is ~S^2 times faster.
    chunk: images per vectorised pass (keeps temporaries cache-sized).
    full_windows: evaluate every part on the whole image (for testing that
      the per-part windows never clip a part).

  Returns:
    images uint8 [N, R, R, 3] and labels uint8 [N, R, R] (`PART_NAMES`).
  """
  images, labels, _ = _render(attrs, resolution, supersample, chunk, full_windows, False)
  return images, labels


def render_footprints(
  attrs: np.ndarray, resolution: int = 64, supersample: int = 1
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Like `render_attributes`, plus amodal part footprints.

  Returns:
    images uint8 [N, R, R, 3], labels uint8 [N, R, R] and footprints bool
    [N, K, R, R]: where part k has nonzero coverage even if occluded. A
    local attribute edit changes no pixel outside its parts' footprints
    (before or after the edit); the visible label regions are a subset.
  """
  return _render(attrs, resolution, supersample, 64, False, True)


def render(seeds, resolution: int = 64, supersample: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Samples attributes from per-image seeds and renders them.

  Args:
    seeds: int array [N]; image i depends only on seeds[i].
    resolution: output side R.
    supersample: see `render_attributes`.

  Returns:
    images uint8 [N, R, R, 3], labels uint8 [N, R, R], attrs float32 [N, A].
  """
  attrs = attr_lib.sample_attributes(np.asarray(seeds).reshape(-1))
  images, labels = render_attributes(attrs, resolution, supersample)
  return images, labels, attrs
