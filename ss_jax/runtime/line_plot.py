"""Line plots with several labelled series, drawn with PIL only (no matplotlib).

`line_plot(series, ...)` -> (H, W, 3) uint8: axes with ticks, one coloured polyline with
dots per series, a legend, optional vertical marker lines (e.g. a matched target change).
`side_by_side(images)` pastes plots into one row.
"""

import numpy as np

PALETTE = (
  (31, 119, 180),
  (214, 39, 40),
  (44, 160, 44),
  (255, 127, 14),
  (148, 103, 189),
  (140, 86, 75),
  (227, 119, 194),
  (127, 127, 127),
  (188, 189, 34),
  (23, 190, 207),
)


def _ticks(lo, hi, n=5):
  """Round tick values covering [lo, hi]."""
  span = hi - lo
  raw = span / max(n - 1, 1)
  mag = 10 ** np.floor(np.log10(raw)) if raw > 0 else 1.0
  step = min((m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw), default=raw)
  start = np.floor(lo / step) * step
  return [float(v) for v in np.arange(start, hi + step * 0.5, step) if lo - 1e-9 <= v <= hi + 1e-9]


def _fmt(v):
  return f"{v:.3g}"


def line_plot(series, title="", xlabel="", ylabel="", vlines=(), width=520, height=380):
  """Plot series = [(label, xs, ys), ...]; NaN points are skipped. Returns (H, W, 3) uint8."""
  from PIL import Image, ImageDraw

  img = Image.new("RGB", (width, height), "white")
  d = ImageDraw.Draw(img)
  legend_h = 14 * ((len(series) + 1) // 2)
  left, right, top, bottom = 52, width - 14, 24, height - 36 - legend_h
  pts = [(float(x), float(y)) for _, xs, ys in series for x, y in zip(xs, ys) if np.isfinite(x) and np.isfinite(y)]
  pts += [(float(v), 0.0) for v in vlines if np.isfinite(v)]
  xs_all = [p[0] for p in pts] or [0.0, 1.0]
  ys_all = [p[1] for p in pts] or [0.0, 1.0]
  x0, x1 = min(xs_all + [0.0]), max(xs_all)
  y0, y1 = min(ys_all + [0.0]), max(ys_all)
  x1, y1 = (x1 if x1 > x0 else x0 + 1.0), (y1 if y1 > y0 else y0 + 1.0)
  y1 += 0.05 * (y1 - y0)
  px = lambda x: left + (x - x0) / (x1 - x0) * (right - left)
  py = lambda y: bottom - (y - y0) / (y1 - y0) * (bottom - top)
  d.rectangle([left, top, right, bottom], outline="black")
  for t in _ticks(y0, y1):
    d.line([left + 1, py(t), right - 1, py(t)], fill=(230, 230, 230))
    d.line([left - 4, py(t), left, py(t)], fill="black")
    d.text((4, py(t) - 6), _fmt(t), fill="black")
  for t in _ticks(x0, x1):
    d.line([px(t), bottom, px(t), bottom + 4], fill="black")
    d.text((px(t) - 8, bottom + 6), _fmt(t), fill="black")
  for v in vlines:
    if np.isfinite(v):
      for yy in range(int(top), int(bottom), 6):
        d.line([px(v), yy, px(v), min(yy + 3, bottom)], fill=(90, 90, 90))
  for k, (label, xs, ys) in enumerate(series):
    col = PALETTE[k % len(PALETTE)]
    p = [(px(float(x)), py(float(y))) for x, y in zip(xs, ys) if np.isfinite(x) and np.isfinite(y)]
    if len(p) > 1:
      d.line(p, fill=col, width=2)
    for x, y in p:
      d.ellipse([x - 3, y - 3, x + 3, y + 3], fill=col)
    lx = left + (k % 2) * (right - left) // 2
    ly = bottom + 22 + 14 * (k // 2)
    d.rectangle([lx, ly + 3, lx + 12, ly + 9], fill=col)
    d.text((lx + 16, ly), str(label), fill="black")
  d.text(((left + right) // 2 - 3 * len(xlabel), height - 14), xlabel, fill="black")
  d.text((left, 6), (title + ("   y: " + ylabel if ylabel else "")).strip(), fill="black")
  return np.asarray(img)


def side_by_side(images, pad=6):
  """Images (H_i, W_i, 3) uint8 -> one row, white padding, top-aligned."""
  h = max(im.shape[0] for im in images)
  w = sum(im.shape[1] for im in images) + pad * (len(images) - 1)
  out = np.full((h, w, 3), 255, np.uint8)
  x = 0
  for im in images:
    out[: im.shape[0], x : x + im.shape[1]] = im
    x += im.shape[1] + pad
  return out
