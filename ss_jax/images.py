"""Image conversion and PNG output (grids, atomic writes)."""
import os
import pathlib
import tempfile

import numpy as np


def to_uint8(x, drange=(-1.0, 1.0)):
  """Float images (N, H, W, C) in drange -> uint8, rounded and clipped (NVIDIA's convention)."""
  lo, hi = drange
  x = (np.asarray(x, np.float32) - lo) * (255.0 / (hi - lo))
  return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def make_grid(images, cols=None, pad=2, pad_value=255):
  """(N, H, W, C) uint8 -> one (rows·(H+pad)+pad, cols·(W+pad)+pad, C) grid image."""
  images = np.asarray(images)
  n, h, w, c = images.shape
  cols = cols or int(np.ceil(np.sqrt(n)))
  rows = int(np.ceil(n / cols))
  grid = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, c), pad_value, images.dtype)
  for i in range(n):
    r, q = divmod(i, cols)
    grid[pad + r * (h + pad):pad + r * (h + pad) + h, pad + q * (w + pad):pad + q * (w + pad) + w] = images[i]
  return grid


def save_png(path, image):
  """Write an (H, W, C) or (H, W) uint8 array as PNG via a temporary file + rename."""
  from PIL import Image
  image = np.asarray(image)
  if image.ndim == 3 and image.shape[2] == 1:
    image = image[:, :, 0]
  if image.ndim == 3 and image.shape[2] not in (3, 4):
    image = image[:, :, :3]  # extra channels cannot go into a PNG; keep the first three
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  fd, tmp = tempfile.mkstemp(suffix=".png", dir=path.parent)
  os.close(fd)
  try:
    Image.fromarray(image).save(tmp, format="PNG")
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise
