"""Image conversion, PNG output (grids, atomic writes) and reading image files."""

import os
import pathlib
import tempfile

import numpy as np

from ss_jax.runtime import outputs


def to_uint8(x, drange=(-1.0, 1.0)):
  """Float images (N, H, W, C) in drange -> uint8, rounded and clipped (NVIDIA's convention)."""
  lo, hi = drange
  x = np.asarray(x, np.float32)
  if not np.all(np.isfinite(x)):
    raise ValueError(
      f"images hold {int(x.size - np.count_nonzero(np.isfinite(x)))} NaN or infinite "
      "value(s); nothing written (check the checkpoint and flags such as --psi)"
    )
  x = (x - lo) * (255.0 / (hi - lo))
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
    grid[pad + r * (h + pad) : pad + r * (h + pad) + h, pad + q * (w + pad) : pad + q * (w + pad) + w] = images[i]
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
  os.fchmod(fd, outputs.file_mode())  # mkstemp's 0600 -> what the umask allows
  os.close(fd)
  try:
    Image.fromarray(image).save(tmp, format="PNG")
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise


# ---------------------------------------------------------------- reading image files

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")


def from_uint8(x, drange=(-1.0, 1.0)):
  """uint8 images -> float32 in drange (inverse of to_uint8 up to rounding)."""
  lo, hi = drange
  return np.asarray(x, np.float32) * ((hi - lo) / 255.0) + lo


def image_files(path):
  """A folder (its image files, sorted by name) or one image file -> list of paths.

  Raises FileNotFoundError when path does not exist, ValueError when a folder
  holds no images (IMAGE_SUFFIXES) or two files share a stem (a.png, a.jpg).
  """
  path = pathlib.Path(path)
  if not path.exists():
    raise FileNotFoundError(f"images not found: {path}")
  if path.is_file():
    return [path]
  files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
  if not files:
    raise ValueError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {path}")
  stems = {}
  for p in files:
    if p.stem in stems:
      raise ValueError(f"{stems[p.stem].name} and {p.name} share the name {p.stem!r}; rename one")
    stems[p.stem] = p
  return files


def _mode_notes(im, path, channels):
  """Notes for the lossy conversions reading `im` (header only) into `channels` channels."""
  if channels not in (1, 3):
    raise ValueError(f"cannot read images for {channels}-channel models (1 or 3 supported)")
  mode, notes = im.mode, []
  if mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in im.info):
    notes.append(f"{path.name}: alpha channel dropped")
  grey = mode in ("1", "L", "LA", "La", "I", "F") or mode.startswith("I;16")
  if channels == 3 and grey:
    notes.append(f"{path.name}: greyscale, converted to RGB")
  elif channels == 3 and mode not in ("RGB", "RGBA", "RGBa", "P", "PA"):
    notes.append(f"{path.name}: {mode} converted to RGB")
  elif channels == 1 and not grey:
    notes.append(f"{path.name}: colour, converted to greyscale")
  return notes


def _open_image(path, size, resize, channels):
  """Opens (lazily, header only) and checks the file; -> (PIL image, notes). ValueError when unusable."""
  from PIL import Image, UnidentifiedImageError

  try:
    im = Image.open(path)
  except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError) as e:
    raise ValueError(f"cannot read image {path}: {e}") from e
  notes = _mode_notes(im, path, channels)
  w, h = im.size
  if size is not None and (w, h) != (size, size):
    if not resize:
      im.close()
      raise ValueError(f"{path}: image is {w}x{h} pixels, expected {size}x{size}")
    notes.append(
      f"{path.name}: resized {w}x{h} -> {size}x{size}" + (" (centre-cropped to a square first)" if w != h else "")
    )
  return im, notes


def _to_array(im, channels):
  """Decoded PIL image -> uint8 (H, W, channels)."""
  if im.mode.startswith("I;16"):  # 16-bit grey -> 8-bit (PIL's own conversion would clip)
    from PIL import Image

    a = np.asarray(im).astype(np.float64) / 257.0
    im = Image.fromarray(np.clip(np.rint(a), 0, 255).astype(np.uint8), "L")
  if channels == 3:
    return np.asarray(im.convert("RGB"))
  return np.asarray(im.convert("L"))[:, :, None]


def check_image(path, size=None, resize=False, channels=3):
  """Reads only the header -> the notes read_image would give; ValueError if unreadable or of the wrong size."""
  path = pathlib.Path(path)
  im, notes = _open_image(path, size, resize, channels)
  im.close()
  return notes


def read_image(path, size=None, resize=False, channels=3):
  """An image file -> (uint8 (size, size, channels) array, notes).

  Alpha is dropped, greyscale is repeated to RGB (or colour converted to grey for
  channels=1), 16-bit greys are scaled to 8 bits; each lossy step adds a one-line
  note. With size given, an image of another size raises ValueError unless
  resize=True: then a non-square image is centre-cropped to a square and resized
  with Lanczos filtering (noted). Unreadable files raise ValueError.
  """
  from PIL import Image

  path = pathlib.Path(path)
  im, notes = _open_image(path, size, resize, channels)
  try:
    im.load()
    x = _to_array(im, channels)
  except (OSError, ValueError, SyntaxError) as e:
    raise ValueError(f"cannot read image {path}: {e}") from e
  finally:
    im.close()
  h, w = x.shape[:2]
  if size is not None and (h, w) != (size, size):
    k = min(w, h)
    top, left = (h - k) // 2, (w - k) // 2
    crop = x[top : top + k, left : left + k]
    y = Image.fromarray(np.ascontiguousarray(crop[:, :, 0] if channels == 1 else crop))
    x = np.asarray(y.resize((size, size), Image.LANCZOS)).reshape(size, size, channels)
  return x, notes
